package refreshtoken

// WaitIdle is waitIdle, for the tests of package refreshtoken_test.
var WaitIdle = waitIdle

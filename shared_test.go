package refreshtoken_test

import (
	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var _ refreshtoken.SharedStore = (*refreshtokentest.MemoryStore)(nil)

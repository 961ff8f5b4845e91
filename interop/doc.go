// Package interop tests refreshtoken against real OAuth 2.0 servers: ory/fosite
// in process, and Ory Hydra as a separate process. It is a module of its own,
// never published, so that the library's module does not depend on them.
// See README.md for how to run it.
package interop

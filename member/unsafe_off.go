//go:build !kvd_unsafe

package member

// unsafeBuild is false in every release build: the unsafe switches in Config
// are refused by Validate.
const unsafeBuild = false

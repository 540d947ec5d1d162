//go:build kvd_unsafe

package member

// unsafeBuild is true only in builds with -tags kvd_unsafe, which exist to
// show that the jepsen suite catches a broken guarantee.
const unsafeBuild = true

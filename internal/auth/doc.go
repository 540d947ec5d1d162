// Package auth holds kvd's authentication and authorization rules, with no
// gRPC and no storage: the auth state as the state machine replicates it
// (State), who may do what (State.Check, Requirements), passwords (bcrypt)
// and tokens (JWT, HS256).
//
// The model is etcd's: users hold roles, roles hold permissions (read,
// write or both, on a key or a range [key, range_end)); the role root may
// do everything; while authentication is disabled everybody may do
// everything. The auth revision moves with every change; each user records
// the revision of its own last change, and a token issued before it is
// refused, so that deleting a user or changing its password or roles takes
// effect for its next request.
package auth

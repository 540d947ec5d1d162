package auth

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// DefaultBcryptCost is bcrypt's default cost, as etcd's --bcrypt-cost.
const DefaultBcryptCost = bcrypt.DefaultCost

// HashPassword hashes a password with bcrypt at cost (bcrypt.MinCost to
// bcrypt.MaxCost). The member that receives a request hashes it before
// proposing, so that the log and the state carry only the hash.
func HashPassword(password string, cost int) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty (add a no-password user for certificate-only access)", ErrInvalidPassword)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// ValidateHash checks that hash is a bcrypt hash.
func ValidateHash(hash string) error {
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return fmt.Errorf("%w: the hashed password is not a bcrypt hash (%v)", ErrInvalidPassword, err)
	}
	return nil
}

// CheckPassword fails with ErrAuthFailed unless user exists, may use a
// password, and password matches its hash.
func (s *State) CheckPassword(user, password string) error {
	u, ok := s.Users[user]
	if !ok || u.GetNoPassword() || len(u.GetPasswordHash()) == 0 {
		return ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(u.GetPasswordHash(), []byte(password)) != nil {
		return ErrAuthFailed
	}
	return nil
}

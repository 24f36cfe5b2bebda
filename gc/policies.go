package gc

import "github.com/ckptfs/ckptfs/gc/policy"

// The retention policy's types (package policy: the rules, without a
// store).
type (
	Policy  = policy.Policy
	Item    = policy.Item
	Verdict = policy.Verdict
)

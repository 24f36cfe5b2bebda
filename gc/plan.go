package gc

import (
	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// A Plan is one gc run, decided once (as restic's PlanPrune): the files a
// policy expires. WouldFree reports what carrying it out gives back (the
// dry run); Execute carries it out. Every caller (gc offline, gc in the
// mount daemon, xen receive after each checkpoint) makes a plan and
// executes it, so what expires is decided in one place.
type Plan struct {
	Policy  Policy
	Expired []Victim // by group, oldest first
}

// Scope narrows a plan to the images of one guest in one directory (xen
// receive expires only its own lineage).
type Scope struct {
	UUID string `json:"uuid"`
	Dir  uint64 `json:"dir"`
}

// NewPlan applies p to every group of files in the store (see expired),
// or only to the lineage only names (nil: all).
func NewPlan(x *index.Index, p Policy, only *Scope) (*Plan, error) {
	vs, err := expired(x, p)
	if err != nil {
		return nil, err
	}
	if only != nil {
		vs = InLineage(vs, only.UUID, only.Dir)
	}
	return &Plan{Policy: p, Expired: vs}, nil
}

// WouldFree returns the stored bytes that executing the plan would free
// (Freed).
func (pl *Plan) WouldFree(cs *chunkstore.Store, x *index.Index) (int64, error) {
	return Freed(cs, x, pl.Expired)
}

// Report is what Execute did.
type Report struct {
	Expired []Victim
	Failed  []string // names that could not be removed, with why
	Result  Result
}

// Execute removes every name of the expired files with rm (the daemon's
// namespace, or OfflineRemover), then collects (CollectWith) with o.
// Progress reports the removals ("expiring files") and the collection's
// phases.
func (pl *Plan) Execute(cs *chunkstore.Store, x *index.Index, rm Remover, o Options, p Progress) (Report, error) {
	rep := Report{Expired: pl.Expired}
	if p != nil {
		done, n := int64(0), int64(len(pl.Expired))
		inner := rm
		rm = func(parent uint64, name string, ino uint64) error {
			p("expiring files", done, n)
			done++
			return inner(parent, name, ino)
		}
	}
	rep.Failed = Remove(pl.Expired, rm)
	var err error
	rep.Result, err = CollectWith(cs, x, o, p)
	return rep, err
}

package chunkstore

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// damaged reports whether err from Pebble says a file of the database is
// damaged (rather than, say, missing permissions).
func damaged(err error) bool {
	if errors.Is(err, pebble.ErrCorruption) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"replaying WAL", "corrupt", "checksum", "unexpected EOF", "invalid", "unknown", "mismatch"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// damage collects the database files Pebble found damaged while reading.
type damage struct {
	mu    sync.Mutex
	files map[string]string // path -> what was wrong
}

func (d *damage) add(path, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[path]; !ok {
		d.files[path] = detail
	}
}

// DamagedFiles returns the database files found damaged since Open, with
// what was wrong with each. Reads of what they hold fail with ErrCorrupt.
func (s *Store) DamagedFiles() map[string]string {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	out := make(map[string]string, len(s.damage.files))
	for k, v := range s.damage.files {
		out[k] = v
	}
	return out
}

// badTable matches a line of Pebble's consistency check at open: a table
// the MANIFEST lists that is missing or not the size it says.
var badTable = regexp.MustCompile(`^L\d+: (\d+): .*(object size mismatch|unknown to the objstorage provider)`)

// badTables returns, by file number, the tables err (from pebble.Open)
// says are missing or the wrong size.
func badTables(err error) map[string]string {
	if err == nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(err.Error(), "\n") {
		if m := badTable.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			out[m[1]] = line
		}
	}
	return out
}

// Degraded reports whether the store was opened (read-only) past damaged
// tables: what they held is unreadable, the rest is served.
func (s *Store) Degraded() bool { return s.degraded }

// KeyRange is a range of keys, both ends included.
type KeyRange struct{ Smallest, Largest []byte }

// DamagedRanges returns the key ranges of the database's tables found
// damaged (at open, or by a read since): reads of keys in them may fail,
// and a scan may skip them to read the rest.
func (s *Store) DamagedRanges() []KeyRange {
	files := s.DamagedFiles()
	if len(files) == 0 {
		return nil
	}
	bad := map[string]bool{}
	for f := range files {
		bad[filepath.Base(f)] = true
	}
	levels, err := s.db.SSTables()
	if err != nil {
		return nil
	}
	var out []KeyRange
	for _, level := range levels {
		for _, t := range level {
			if bad[fmt.Sprintf("%s.sst", t.FileNum)] {
				out = append(out, KeyRange{Smallest: append([]byte(nil), t.Smallest.UserKey...), Largest: append([]byte(nil), t.Largest.UserKey...)})
			}
		}
	}
	return out
}

// quietLogger drops Pebble's informational messages and sends errors to the
// process's standard logger, which the daemon configures: one line each
// (Pebble's errors carry multi-line stack traces), and a message repeated
// within a minute is counted, not printed again (a full disk makes Pebble
// retry the same failing flush over and over).
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}

func (quietLogger) Errorf(f string, a ...any) { logLimited("pebble: " + OneLine(fmt.Sprintf(f, a...))) }

func (quietLogger) Fatalf(f string, a ...any) {
	msg := "pebble: " + OneLine(fmt.Sprintf(f, a...))
	log.Print(msg)
	if h := FatalHook; h != nil {
		h(msg)
	}
	os.Exit(exitFatal)
}

// FatalHook, if set, runs when the database meets an error it cannot go on
// from, just before the process exits (the daemon unmounts there).
var FatalHook func(msg string)

const exitFatal = 1

// OneLine keeps the first line of a message (Pebble's errors carry stack
// traces and detail lines after it).
func OneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " (...)"
	}
	return s
}

// Limiter drops a log message that repeats the previous one within a
// minute, numbers aside (Pebble retries a failing flush into new files; a
// reader retries the same damaged chunk at other offsets), and says how
// many it dropped when the next different message comes.
type Limiter struct {
	mu       sync.Mutex
	last     string
	at       time.Time
	repeated int
}

// Print logs msg to l (the standard logger if nil) unless it repeats.
func (lim *Limiter) Print(l *log.Logger, msg string) {
	if l == nil {
		l = log.Default()
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	now := time.Now()
	key := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, msg)
	if key == lim.last && now.Sub(lim.at) < time.Minute {
		lim.repeated++
		return
	}
	if lim.repeated > 0 {
		l.Printf("(the previous message repeated %d times)", lim.repeated)
	}
	lim.last, lim.at, lim.repeated = key, now, 0
	l.Print(msg)
}

var pebbleLog Limiter

func logLimited(msg string) { pebbleLog.Print(nil, msg) }

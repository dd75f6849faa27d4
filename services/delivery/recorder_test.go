package delivery

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/services/delivery/store"
)

// Records that arrive while a commit runs go together in the next one:
// every caller returns once its own record is written, in fewer commits
// than records, and a failed commit fails each of its callers.
func TestRecorderGroupsCommits(t *testing.T) {
	var mu sync.Mutex
	var written []string
	commits := 0
	gate := make(chan struct{})
	first := true
	r := &recorder{write: func(ws []store.Write) error {
		mu.Lock()
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-gate // the first commit runs while the others arrive
		}
		mu.Lock()
		defer mu.Unlock()
		commits++
		for _, w := range ws {
			written = append(written, w.Key)
		}
		return nil
	}}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.record(store.Write{Key: "k0"}); err != nil {
			t.Error(err)
		}
	})
	for !r.busyNow() {
		runtime.Gosched()
	}
	for i := 1; i <= 50; i++ {
		wg.Go(func() {
			if err := r.record(store.Write{Key: "k"}); err != nil {
				t.Error(err)
			}
		})
	}
	for r.pendingNow() < 50 {
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	if len(written) != 51 || commits != 2 {
		t.Errorf("%d records in %d commits, want 51 in 2", len(written), commits)
	}

	boom := errors.New("the store is gone")
	r = &recorder{write: func([]store.Write) error { return boom }}
	if err := r.record(store.Write{Key: "x"}); !errors.Is(err, boom) {
		t.Errorf("a failed commit answered %v", err)
	}
}

func (r *recorder) busyNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy
}

func (r *recorder) pendingNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

package logout

import (
	"context"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// TestSubscriberCountsWhatItLeavesOut: an event whose time cannot be read
// still ends its session, and the field left out is counted.
func TestSubscriberCountsWhatItLeavesOut(t *testing.T) {
	f := startSubscriber(t, false)
	ctx := context.Background()
	for _, msg := range []string{
		`{"v":1,"kind":"session","session":"now","time":1795302000123}`,
		`{"v":1,"kind":"session","session":"odd","time":"the day before","origin":["x"]}`,
	} {
		if err := f.rdb.Publish(ctx, DefaultChannel, msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "both events applied", f.rec.with(func(r *recorder) bool { return len(r.events) == 2 }))
	if n := counterSum(t, f.reg, "authz_logout_event_fields_ignored_total"); n != 2 {
		t.Errorf("fields ignored = %v; want 2 (time and origin)", n)
	}
	if n := counterSum(t, f.reg, "authz_logout_events_rejected_total"); n != 0 {
		t.Errorf("rejected = %v; want 0", n)
	}
}

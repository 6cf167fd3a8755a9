package triggerapi_test

import (
	"encoding/json"
	"testing"

	"github.com/trinehq/trine/triggerapi"
)

// TestGoldenJSON: the bytes a function receives are iii's, field for
// field, in this order.
func TestGoldenJSON(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{triggerapi.CronEvent{Trigger: "cron", JobID: "j", ScheduledTime: "2026-01-02T03:04:05Z", ActualTime: "2026-01-02T03:04:05.5Z"},
			`{"trigger":"cron","job_id":"j","scheduled_time":"2026-01-02T03:04:05Z","actual_time":"2026-01-02T03:04:05.5Z"}`},
		{triggerapi.StateEvent{Type: "state", EventType: "state:updated", Scope: "s", Key: "k", OldValue: json.RawMessage(`1`), NewValue: json.RawMessage(`{"a":2}`), Seq: 7},
			`{"type":"state","event_type":"state:updated","scope":"s","key":"k","old_value":1,"new_value":{"a":2},"seq":7}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T: %s %v; want %s", c.v, b, err, c.want)
		}
	}
}

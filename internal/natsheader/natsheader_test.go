package natsheader_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/internal/natsheader"
	"github.com/trinehq/trine/internal/natstest"
)

// TestEncodedValueCrossesNATSUnchanged: names that nats.go would alter as
// plain header values arrive byte-exact once encoded.
func TestEncodedValueCrossesNATSUnchanged(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	sub, err := nc.SubscribeSync("h")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"job::q ", " lead", "news\nx", "a\r\nb", "nul\x00", "100%", "ünï", "\xff", "plain::id"} {
		m := &nats.Msg{Subject: "h", Header: nats.Header{"V": []string{natsheader.Encode(v)}}}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		got, err := sub.NextMsg(5e9)
		if err != nil {
			t.Fatal(err)
		}
		d, err := natsheader.Decode(got.Header.Get("V"))
		if err != nil || d != v {
			t.Errorf("Decode(%q) = %q, %v; want %q", got.Header.Get("V"), d, err, v)
		}
	}
}

func TestDecodeRefusesWhatEncodeCannotMake(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"job::q ", "a b", "a\nb", "%", "%4", "%zz", "%4a", "%41", "ü", "\x00"} {
		if d, err := natsheader.Decode(s); !errors.Is(err, natsheader.ErrBadValue) {
			t.Errorf("Decode(%q) = %q, %v; want ErrBadValue", s, d, err)
		}
	}
	if d, err := natsheader.Decode("plain::id"); err != nil || d != "plain::id" {
		t.Errorf("Decode(plain::id) = %q, %v", d, err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a b", "%", "ü\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		e := natsheader.Encode(v)
		d, err := natsheader.Decode(e)
		if err != nil || d != v {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", v, d, err)
		}
		for i := 0; i < len(e); i++ {
			if e[i] <= 0x20 || e[i] >= 0x7F {
				t.Fatalf("Encode(%q) = %q holds byte %#x", v, e, e[i])
			}
		}
		if d, err := natsheader.Decode(v); err == nil && natsheader.Encode(d) != v {
			t.Fatalf("Decode(%q) = %q, which encodes to %q: two encodings of one value", v, d, natsheader.Encode(d))
		}
	})
}

package recording

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"
	"time"
)

// seq yields events, then end if it is not nil.
func seq(events []Event, end error) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
		if end != nil {
			yield(Event{}, end)
		}
	}
}

func TestPlay(t *testing.T) {
	events := []Event{
		{0, "o", "a"},
		{time.Second, "o", "b"},
		{1500 * time.Millisecond, "i", "typed"},
		{1500 * time.Millisecond, "o", "c"},
		{11500 * time.Millisecond, "r", "90x20"},
		{11500 * time.Millisecond, "o", "d"},
		{11500*time.Millisecond + 100*time.Microsecond, "o", "e"},
		{11500*time.Millisecond + 1100*time.Microsecond, "o", "f"},
	}
	tests := []struct {
		name   string
		opts   PlayOptions
		sleeps []time.Duration
	}{
		{"original timing", PlayOptions{}, []time.Duration{time.Second, 500 * time.Millisecond, 10 * time.Second, 1100 * time.Microsecond}},
		{"twice as fast", PlayOptions{Speed: 2}, []time.Duration{500 * time.Millisecond, 250 * time.Millisecond, 5 * time.Second}},
		{"half speed", PlayOptions{Speed: 0.5}, []time.Duration{2 * time.Second, time.Second, 20 * time.Second, 2200 * time.Microsecond}},
		{"idle limit", PlayOptions{IdleLimit: 2 * time.Second}, []time.Duration{time.Second, 500 * time.Millisecond, 2 * time.Second, 1100 * time.Microsecond}},
		{"idle limit then speed", PlayOptions{Speed: 4, IdleLimit: 2 * time.Second}, []time.Duration{250 * time.Millisecond, 125 * time.Millisecond, 500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			var sleeps []time.Duration
			tt.opts.Sleep = func(ctx context.Context, d time.Duration) error {
				sleeps = append(sleeps, d)
				return nil
			}
			if err := Play(context.Background(), &out, seq(events, nil), tt.opts); err != nil {
				t.Fatalf("Play: %v", err)
			}
			if got := out.String(); got != "abcdef" {
				t.Errorf("output: got %q; want %q", got, "abcdef")
			}
			if fmt.Sprint(sleeps) != fmt.Sprint(tt.sleeps) {
				t.Errorf("sleeps: got %v; want %v", sleeps, tt.sleeps)
			}
		})
	}
}

func noSleep(context.Context, time.Duration) error { return nil }

// errAny in a want field means any error will do.
var errAny = errors.New("any error")

func TestPlayStops(t *testing.T) {
	events := []Event{{0, "o", "a"}, {time.Second, "o", "b"}, {2 * time.Second, "o", "c"}}
	canceled, cancel := context.WithCancelCause(context.Background())
	stopped := errors.New("viewer left")
	cancel(stopped)
	tests := []struct {
		name    string
		ctx     context.Context
		events  iter.Seq2[Event, error]
		sleep   func(context.Context, time.Duration) error
		opts    PlayOptions
		wantOut string
		wantErr error
	}{
		{"truncated recording", context.Background(), seq(events, ErrTruncated), noSleep, PlayOptions{}, "abc", ErrTruncated},
		{"sleep fails", context.Background(), seq(events, nil), func(context.Context, time.Duration) error { return stopped }, PlayOptions{}, "a", stopped},
		{"real timer, canceled", canceled, seq(events, nil), nil, PlayOptions{}, "", stopped},
		{"negative speed", context.Background(), seq(events, nil), nil, PlayOptions{Speed: -1}, "", errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tt.opts.Sleep = tt.sleep
			err := Play(tt.ctx, &out, tt.events, tt.opts)
			if tt.wantErr == errAny && err == nil || tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v; want %v", err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output: got %q; want %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestPlayRealTimer(t *testing.T) {
	events := []Event{{0, "o", "a"}, {20 * time.Millisecond, "o", "b"}, {40 * time.Millisecond, "o", "c"}}
	var out bytes.Buffer
	start := time.Now()
	if err := Play(context.Background(), &out, seq(events, nil), PlayOptions{Speed: 2}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("played 40ms at speed 2 in %v; want at least 20ms", el)
	}
	if out.String() != "abc" {
		t.Errorf("got %q; want abc", out.String())
	}
}

// TestPlayCast plays a recorded cast end to end.
func TestPlayCast(t *testing.T) {
	r, clk := newRecorder(t, Config{RecordInput: true})
	c := startCast(t, r)
	c.Output([]byte("$ "))
	clk.Advance(time.Second)
	c.Input([]byte("ls\r"))
	c.Output([]byte("ls\r\n"))
	clk.Advance(30 * time.Second)
	c.Output([]byte("caf\xc3"))
	c.Output([]byte("\xa9\r\n"))
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	_, events, _ := readEvents(t, m.Path)
	var out bytes.Buffer
	var total time.Duration
	sleep := func(_ context.Context, d time.Duration) error { total += d; return nil }
	if err := Play(context.Background(), &out, seq(events, nil), PlayOptions{IdleLimit: 5 * time.Second, Sleep: sleep}); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "$ ls\r\ncafé\r\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if total != 6*time.Second {
		t.Errorf("slept %v; want 6s (1s, then 30s capped at 5s)", total)
	}
}

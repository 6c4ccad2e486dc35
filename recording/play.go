package recording

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// minSleep is the shortest pause Play sleeps for: shorter gaps add up
// until they reach it, so a burst of output is not slowed down by timer
// overhead while the total time stays the same.
const minSleep = time.Millisecond

// PlayOptions tune Play.
type PlayOptions struct {
	// Speed divides every pause: 2 plays twice as fast. 0 means 1.
	Speed float64
	// IdleLimit caps each pause between two outputs, as recorded (before
	// Speed applies), as asciinema's idle_time_limit does. 0 means no limit.
	IdleLimit time.Duration
	// Sleep waits d or until ctx ends, returning context.Cause(ctx) then.
	// nil means a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the output events to w with their original timing, scaled by
// Speed and with pauses capped by IdleLimit. Input and resize events are
// not written. It returns when events end (nil), or with the first error of
// events (ErrTruncated after playing what was complete), of w, or of
// Sleep, which is context.Cause(ctx) when ctx ends.
func Play(ctx context.Context, w io.Writer, events iter.Seq2[Event, error], opts PlayOptions) error {
	if opts.Speed < 0 {
		return errors.New("recording: play speed is negative")
	}
	if opts.IdleLimit < 0 {
		return errors.New("recording: play idle limit is negative")
	}
	speed := opts.Speed
	if speed == 0 {
		speed = 1
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepTimer
	}
	var (
		last time.Duration // elapsed time of the last output written
		owed time.Duration // pause not yet slept
	)
	for e, err := range events {
		if err != nil {
			return err
		}
		if e.Type != "o" {
			continue
		}
		gap := max(e.Elapsed-last, 0)
		last = e.Elapsed
		if opts.IdleLimit > 0 && gap > opts.IdleLimit {
			gap = opts.IdleLimit
		}
		owed += time.Duration(float64(gap) / speed)
		if owed >= minSleep {
			if err := sleep(ctx, owed); err != nil {
				return err
			}
			owed = 0
		} else if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, err := io.WriteString(w, e.Data); err != nil {
			return err
		}
	}
	return nil
}

// sleepTimer waits d or until ctx ends.
func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

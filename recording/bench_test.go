package recording

import (
	"bytes"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCast32K records 32 KiB outputs, as a relay's copier hands them
// over, until the file is closed: MB/s is what the recording sustains, and
// cpu-s/GiB what it costs, counting every goroutine (the workers' escaping,
// compression, hashing and writes included).
func BenchmarkCast32K(b *testing.B) {
	text := bytes.Repeat([]byte("drwxr-xr-x  2 ubuntu ubuntu 4096 Nov 29 12:00 \x1b[01;34mcafé\x1b[0m \"x\"\r\n"), 1024)[:32<<10]
	inputs := []struct {
		name string
		p    []byte
	}{
		{"nul", make([]byte, 32<<10)},
		{"text", text},
		{"x", bytes.Repeat([]byte("x"), 32<<10)},
	}
	for _, comp := range compressions {
		for _, in := range inputs {
			b.Run(string(comp)+"/"+in.name, func(b *testing.B) {
				r, err := New(Config{Dir: b.TempDir(), Compression: comp})
				if err != nil {
					b.Fatal(err)
				}
				c, err := r.StartSSH(sshMeta())
				if err != nil {
					b.Fatal(err)
				}
				c.Output(in.p)
				b.SetBytes(int64(len(in.p)))
				b.ReportAllocs()
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for b.Loop() {
					c.Output(in.p)
				}
				m, err := c.Close("done")
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				gib := float64(b.N) * float64(len(in.p)) / (1 << 30)
				b.ReportMetric((cpuTime(b)-cpu0).Seconds()/gib, "cpu-s/GiB")
				b.ReportMetric(float64(m.Bytes)/float64(int64(b.N+1)*int64(len(in.p))), "file-B/B")
			})
		}
	}
}

// BenchmarkIdleCasts opens 1,000 casts that each record a shell prompt,
// lets the flusher write them and see them idle, and reports the heap and
// goroutines each open, idle Cast holds.
func BenchmarkIdleCasts(b *testing.B) {
	const n = 1000
	for _, comp := range compressions {
		b.Run(string(comp), func(b *testing.B) {
			for b.Loop() {
				r, err := New(Config{Dir: b.TempDir(), Compression: comp, FlushInterval: 10 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				// One open recording first: the pool and the shared encoder
				// are the Recorder's, not any one Cast's.
				first, err := r.StartSSH(SSHMeta{Session: "warm", Channel: "0", Person: "p", Login: "l", Target: "t"})
				if err != nil {
					b.Fatal(err)
				}
				first.Output([]byte("ubuntu@web-1:~$ "))
				time.Sleep(50 * time.Millisecond)
				heap0, g0 := heapInUse(), runtime.NumGoroutine()
				casts := make([]*Cast, n)
				for i := range casts {
					c, err := r.StartSSH(SSHMeta{Session: fmt.Sprintf("s%d", i), Channel: "0", Person: "alice@example.com",
						Login: "ubuntu", Target: "web-1", Width: 120, Height: 40, Env: map[string]string{"TERM": "xterm-256color"}})
					if err != nil {
						b.Fatal(err)
					}
					c.Output([]byte("ubuntu@web-1:~$ "))
					casts[i] = c
				}
				time.Sleep(100 * time.Millisecond) // flushed, then idle for a whole interval
				heap1, g1 := heapInUse(), runtime.NumGoroutine()
				b.ReportMetric(float64(heap1-heap0)/n, "heap-B/cast")
				b.ReportMetric(float64(g1-g0)/n, "goroutines/cast")
				for _, c := range casts {
					if _, err := c.Close("exit"); err != nil {
						b.Fatal(err)
					}
				}
				first.Close("exit")
			}
		})
	}
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

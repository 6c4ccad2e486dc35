package notify

import "sync"

// notification is one message for one webhook, ready to send.
type notification struct {
	// event is the event type, e.g. amendment.requested.
	event string
	// amendment is the amendment's short ID, for log lines.
	amendment string
	// delivery identifies the notification to the receiver (header
	// X-Jitproxy-Delivery); it stays the same across retries, so a
	// receiver can drop a duplicate when an answer was lost.
	delivery string
	body     []byte
}

// queue is a bounded FIFO of notifications for one webhook. When it is full,
// push drops the oldest, so a dead webhook costs at most its capacity.
type queue struct {
	mu    sync.Mutex // guards items, head and n
	items []notification
	head  int // index of the oldest item
	n     int // number of items
	// ready has room for one signal; push signals it so a waiting worker
	// wakes up.
	ready chan struct{}
}

func newQueue(size int) *queue {
	return &queue{items: make([]notification, size), ready: make(chan struct{}, 1)}
}

// push appends x. If the queue was full it first removes the oldest item
// and returns it with dropped true.
func (q *queue) push(x notification) (old notification, dropped bool) {
	q.mu.Lock()
	if q.n == len(q.items) {
		old, dropped = q.items[q.head], true
		q.items[q.head] = notification{}
		q.head = (q.head + 1) % len(q.items)
		q.n--
	}
	q.items[(q.head+q.n)%len(q.items)] = x
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return old, dropped
}

// pop removes and returns the oldest item; ok is false if there is none.
func (q *queue) pop() (x notification, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return notification{}, false
	}
	x = q.items[q.head]
	q.items[q.head] = notification{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return x, true
}

// len returns the number of items waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

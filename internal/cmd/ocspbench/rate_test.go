package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func rateRequests(t *testing.T, host string, paths ...string) [][]byte {
	t.Helper()
	var reqs [][]byte
	for _, p := range paths {
		reqs = append(reqs, []byte("GET "+p+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"))
	}
	return reqs
}

func TestRunRate(t *testing.T) {
	var calls atomic.Int64
	stallAt := int64(-1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == atomic.LoadInt64(&stallAt) {
			time.Sleep(200 * time.Millisecond)
		}
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("fixed answer"))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name      string
		paths     []string
		stall     int64 // the call that answers 200 ms late, or -1
		wantOK    bool  // latencies recorded (answers 200)
		minP99    time.Duration
		maxP99    time.Duration
		minStatus int
	}{
		// 1000 req/s for 0.5 s: about 500 measured requests, fast.
		{name: "steady", paths: []string{"/a", "/b"}, stall: -1, wantOK: true, maxP99: 50 * time.Millisecond},
		// One answer 200 ms late holds up its connection: the requests
		// scheduled on it meanwhile (one every 4 ms) count their wait,
		// about 50 of 500, so p99 is well above 100 ms. A closed-loop
		// count would have one slow request and a fast p99.
		{name: "stall is counted", paths: []string{"/a"}, stall: 700, wantOK: true, minP99: 100 * time.Millisecond},
		{name: "status errors", paths: []string{"/missing"}, stall: -1, minStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			atomic.StoreInt64(&stallAt, tc.stall)
			res, err := runRate(context.Background(), rateConfig{
				Addr: host, Requests: rateRequests(t, host, tc.paths...),
				Rate: 1000, Conns: 4, Duration: 500 * time.Millisecond, Warmup: 500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Unsent != 0 {
				t.Fatalf("errors = %d, unsent = %d", res.Errors, res.Unsent)
			}
			if res.Status < tc.minStatus {
				t.Errorf("status errors = %d, want >= %d", res.Status, tc.minStatus)
			}
			if !tc.wantOK {
				if len(res.Samples) != 0 {
					t.Errorf("%d latencies recorded for failed answers", len(res.Samples))
				}
				return
			}
			// The schedule fixes the count: 500 in the window, give or
			// take the connections' boundaries.
			if n := len(res.Samples); n < 490 || n > 510 {
				t.Errorf("measured %d requests, want ~500", n)
			}
			if res.Completed < 480 || res.Completed > 510 {
				t.Errorf("%d answers arrived in the window, want ~500", res.Completed)
			}
			line := res.line()
			p99 := quantiles(res.latencies(), 0.99)[0]
			if tc.minP99 > 0 && p99 < tc.minP99 {
				t.Errorf("p99 = %v, want >= %v (%s)", p99, tc.minP99, line)
			}
			if tc.maxP99 > 0 && p99 > tc.maxP99 {
				t.Errorf("p99 = %v, want <= %v (%s)", p99, tc.maxP99, line)
			}
			if !strings.HasPrefix(line, "RESULT requests=") || !strings.Contains(line, " p99_ms=") {
				t.Errorf("line = %q", line)
			}
		})
	}
}

func TestRateConnReconnects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye"))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := &rateConn{addr: host}
	defer c.close()
	for i := range 3 {
		status, err := c.do(rateRequests(t, host, "/")[0])
		if err != nil || status != 200 {
			t.Fatalf("request %d: status %d, err %v", i, status, err)
		}
		if c.conn != nil {
			t.Fatalf("request %d: connection kept after Connection: close", i)
		}
	}
}

// TestRunRateOverload: asked for more than the server can answer, the run
// reports what arrived (the capacity seen through this client), and the
// latencies grow with the backlog.
func TestRunRateOverload(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		_, _ = w.Write([]byte("slow"))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	// Two connections answering in 10 ms each: ~200 a second at most.
	res, err := runRate(context.Background(), rateConfig{
		Addr: host, Requests: rateRequests(t, host, "/"), Rate: 1000, Conns: 2,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed < 60 || res.Completed > 110 {
		t.Errorf("%d answers in 0.5 s, want about 100", res.Completed)
	}
	if res.Late < 100*time.Millisecond {
		t.Errorf("behind schedule by %v at the end, want a growing backlog", res.Late)
	}
	// About 500 scheduled in the window, 100 answered in it and ~200 in
	// the second after it: the rest is left unsent.
	if res.Unsent < 100 || len(res.Samples)+res.Unsent < 480 {
		t.Errorf("%d unsent, %d answered of ~500 scheduled", res.Unsent, len(res.Samples))
	}
}

// TestTimeline: samples land in the interval of their scheduled time,
// and each interval reports its own count, p99 and max.
func TestTimeline(t *testing.T) {
	ms := time.Millisecond
	r := rateResult{Duration: 300 * ms}
	for i := range 100 {
		r.Samples = append(r.Samples, sample{at: time.Duration(i) * ms, lat: ms})            // first interval: fast
		r.Samples = append(r.Samples, sample{at: 200*ms + time.Duration(i)*ms, lat: 2 * ms}) // third
	}
	r.Samples = append(r.Samples, sample{at: 250 * ms, lat: 40 * ms}) // one slow answer in the third
	got := r.timeline(100 * ms)
	want := []string{
		"TIMELINE at_ms=0 requests=100 p99_ms=1.000 max_ms=1.000",
		"TIMELINE at_ms=100 requests=0 p99_ms=0.000 max_ms=0.000",
		"TIMELINE at_ms=200 requests=101 p99_ms=2.000 max_ms=40.000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

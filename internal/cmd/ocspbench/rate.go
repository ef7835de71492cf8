package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rate runs an open-loop load at a fixed request rate and prints one
// RESULT line, in the format of scripts/wrk-result.lua plus the tail.
//
// wrk is a closed loop: each connection sends its next request when the
// previous answer arrives, so at saturation the latency it reports is set
// by how many connections queue at the server (Little's law), and a stall
// delays the requests that would have been sent during it without
// counting them (coordinated omission). Neither says what a relying party
// sees at a given load. Here every request has a scheduled send time
// (rate/conns per connection, staggered), and its latency runs from that
// time: a request that had to wait behind a slow answer on its connection
// counts the wait. Only the client's own lateness is left out: when a
// connection was idle at the scheduled time, the clock starts when the
// request is actually written, so timer jitter of this process does not
// count against the server.
func rate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ExitOnError)
	target := fs.String("url", "", "server base URL, http://HOST:PORT")
	dir := fs.String("dir", "", "request files written by `ocspbench seed`")
	mode := fs.String("mode", "post", "post, get or nonce")
	record := fs.Int("record", 0, "size of one DER record in post.bin/nonce.bin")
	path := fs.String("path", "/ocsp", "POST path")
	perSec := fs.Float64("rate", 1000, "requests per second, in total")
	conns := fs.Int("conns", 64, "connections")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time at the same rate before it")
	timeline := fs.Duration("timeline", 0, "also print the count, p99 and max of each interval this long, by scheduled time (0: no)")
	_ = fs.Parse(args)

	host, err := hostOf(*target)
	if err != nil {
		return err
	}
	reqs, err := loadRequests(*dir, *mode, *record, *path, host)
	if err != nil {
		return err
	}
	res, err := runRate(context.Background(), rateConfig{
		Addr: host, Requests: reqs, Rate: *perSec, Conns: *conns,
		Duration: *duration, Warmup: *warmup,
	})
	if err != nil {
		return err
	}
	fmt.Println(res.line())
	if *timeline > 0 {
		for _, l := range res.timeline(*timeline) {
			fmt.Println(l)
		}
	}
	return nil
}

func hostOf(u string) (string, error) {
	h, ok := strings.CutPrefix(u, "http://")
	if h = strings.TrimSuffix(h, "/"); !ok || h == "" {
		return "", fmt.Errorf("url %q: want http://HOST:PORT", u)
	}
	return h, nil
}

// loadRequests formats every request of the seeded files once, as the wrk
// script does, so that sending one is a write of prepared bytes.
func loadRequests(dir, mode string, record int, path, host string) ([][]byte, error) {
	var reqs [][]byte
	switch mode {
	case "get":
		b, err := os.ReadFile(filepath.Join(dir, "get.txt"))
		if err != nil {
			return nil, err
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(line) > 0 {
				reqs = append(reqs, fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", line, host))
			}
		}
	case "post", "nonce":
		name := "post.bin"
		if mode == "nonce" {
			name = "nonce.bin"
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if record <= 0 || len(b)%record != 0 {
			return nil, fmt.Errorf("%s: record size %d does not divide %d bytes", name, record, len(b))
		}
		for off := 0; off < len(b); off += record {
			r := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\nContent-Length: %d\r\n\r\n", path, host, record)
			reqs = append(reqs, append(r, b[off:off+record]...))
		}
	default:
		return nil, fmt.Errorf("mode %q: want post, get or nonce", mode)
	}
	if len(reqs) == 0 {
		return nil, errors.New("no requests")
	}
	return reqs, nil
}

// drainLimit is how long after the window requests scheduled in it are
// still sent; an overloaded run leaves the rest unsent (and says so)
// rather than working through its backlog.
const drainLimit = time.Second

type rateConfig struct {
	Addr     string   // host:port
	Requests [][]byte // complete HTTP/1.1 requests; each send picks one at random
	Rate     float64  // requests per second over all connections
	Conns    int
	Duration time.Duration // measured
	Warmup   time.Duration // sent at the same rate before, not measured
}

// sample is one latency and when, in the measured window, its request
// was scheduled.
type sample struct {
	at, lat time.Duration
}

type rateResult struct {
	Rate      float64       // asked for
	Duration  time.Duration // measured window
	Samples   []sample      // latencies from the scheduled send time (see rate), with that time
	Completed int           // answers (200 or not) that arrived within the window
	Unsent    int           // requests of the window still unsent drainLimit after it (overload)
	Errors    int           // connection and protocol errors
	Status    int           // answers other than 200
	Late      time.Duration // how far the last request of the window started behind schedule, worst connection
}

// latencies returns the latencies of the samples.
func (r rateResult) latencies() []time.Duration {
	l := make([]time.Duration, len(r.Samples))
	for i, s := range r.Samples {
		l[i] = s.lat
	}
	return l
}

func (r rateResult) line() string {
	q := quantiles(r.latencies(), 0.5, 0.9, 0.99, 0.999, 1)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	// rps is what arrived within the window: below the rate asked for
	// when the server (or this client) cannot keep up, which makes an
	// overloaded run measure the capacity seen through this client.
	return fmt.Sprintf("RESULT requests=%d seconds=%.2f rps=%.0f target_rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f behind_ms=%.1f unsent=%d errors=%d status_errors=%d",
		len(r.Samples), r.Duration.Seconds(), float64(r.Completed)/r.Duration.Seconds(), r.Rate,
		ms(q[0]), ms(q[1]), ms(q[2]), ms(q[3]), ms(q[4]), ms(r.Late), r.Unsent, r.Errors, r.Status)
}

// timeline returns one line per interval of the measured window: when it
// starts, how many requests were scheduled in it, and their p99 and
// max latency. It shows whether a tail is spread out (queueing) or made
// of bursts (pauses on the server).
func (r rateResult) timeline(every time.Duration) []string {
	n := int((r.Duration + every - 1) / every)
	buckets := make([][]time.Duration, n)
	for _, s := range r.Samples {
		if i := int(s.at / every); i >= 0 && i < n {
			buckets[i] = append(buckets[i], s.lat)
		}
	}
	out := make([]string, n)
	for i, b := range buckets {
		q := quantiles(b, 0.99, 1)
		out[i] = fmt.Sprintf("TIMELINE at_ms=%d requests=%d p99_ms=%.3f max_ms=%.3f",
			(time.Duration(i) * every).Milliseconds(), len(b), float64(q[0])/1e6, float64(q[1])/1e6)
	}
	return out
}

// quantiles returns the p-quantiles (0 < p <= 1) of lat, by rank.
func quantiles(lat []time.Duration, ps ...float64) []time.Duration {
	l := slices.Clone(lat)
	slices.Sort(l)
	out := make([]time.Duration, len(ps))
	if len(l) == 0 {
		return out
	}
	for i, p := range ps {
		out[i] = l[min(int(p*float64(len(l))), len(l)-1)]
	}
	return out
}

// runRate sends cfg.Rate requests per second for Warmup+Duration and
// returns the latencies of the requests scheduled in the measured window.
// Connection i sends its k-th request at start + (i + k·Conns)/Rate.
func runRate(ctx context.Context, cfg rateConfig) (rateResult, error) {
	if cfg.Rate <= 0 || cfg.Conns <= 0 || len(cfg.Requests) == 0 {
		return rateResult{}, errors.New("rate, conns and requests must be positive")
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now().Add(50 * time.Millisecond)
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	perConn := int(cfg.Rate*cfg.Duration.Seconds())/cfg.Conns + 1

	type connResult struct {
		samples   []sample
		completed int
		unsent    int
		errs      int
		status    int
		late      time.Duration
	}
	results := make([]connResult, cfg.Conns)
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		wg.Go(func() {
			cr := &results[i]
			cr.samples = make([]sample, 0, perConn)
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			c := &rateConn{addr: cfg.Addr}
			defer c.close()
			at := func(k int) time.Time { return start.Add(time.Duration(i+k*cfg.Conns) * interval) }
			for k := 0; ; k++ {
				sched := at(k)
				if !sched.Before(end) || ctx.Err() != nil {
					return
				}
				from, now := sched, time.Now()
				if !now.Before(end.Add(drainLimit)) {
					// Overloaded: what is still to send stays unsent.
					for ; sched.Before(end); k, sched = k+1, at(k+1) {
						if !sched.Before(measureFrom) {
							cr.unsent++
						}
					}
					return
				}
				if now.Before(sched) {
					time.Sleep(sched.Sub(now))
					from = time.Now()
				}
				if !sched.Before(measureFrom) {
					cr.late = max(0, now.Sub(sched))
				}
				status, err := c.do(cfg.Requests[rng.IntN(len(cfg.Requests))])
				done := time.Now()
				if err == nil && !done.Before(measureFrom) && done.Before(end) {
					cr.completed++
				}
				if sched.Before(measureFrom) {
					continue
				}
				switch {
				case err != nil:
					cr.errs++
				case status != 200:
					cr.status++
				default:
					cr.samples = append(cr.samples, sample{at: sched.Sub(measureFrom), lat: done.Sub(from)})
				}
			}
		})
	}
	wg.Wait()
	res := rateResult{Rate: cfg.Rate, Duration: cfg.Duration}
	for _, cr := range results {
		res.Samples = append(res.Samples, cr.samples...)
		res.Completed += cr.completed
		res.Unsent += cr.unsent
		res.Errors += cr.errs
		res.Status += cr.status
		res.Late = max(res.Late, cr.late)
	}
	return res, nil
}

// rateConn is one keep-alive HTTP/1.1 connection that sends a prepared
// request and reads the answer: status line, headers up to the blank
// line, and a Content-Length body. It reconnects after an error or an
// answer that closes the connection.
type rateConn struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	body []byte
}

func (c *rateConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rateConn) do(req []byte) (int, error) {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return 0, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	status, err := c.exchange(req)
	if err != nil {
		c.close()
	}
	return status, err
}

func (c *rateConn) exchange(req []byte) (int, error) {
	if _, err := c.conn.Write(req); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, closing := -1, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	if _, err := io.ReadFull(c.br, c.body[:length]); err != nil {
		return 0, err
	}
	if closing {
		c.close()
	}
	return status, nil
}

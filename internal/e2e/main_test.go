package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binaryEnv names the gmtrust binary under test. TestMain builds one and
// sets it; setting it beforehand tests a binary built elsewhere (a release
// build, say) instead.
const binaryEnv = "GMTRUST_E2E_BINARY"

// TestMain builds the binary once for the whole package: every test drives
// the real program, as an operator would.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(binaryEnv) != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "gmtrust-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building gmtrust:", err)
		return 1
	}
	// The environment, not a package variable, carries the path to the
	// tests: it is set once here and only read afterwards.
	if err := os.Setenv(binaryEnv, bin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// buildBinary compiles ./cmd/gmtrust from the module root into dir.
func buildBinary(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "gmtrust")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gmtrust")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. The tiny window before the server binds it is acceptable for tests
// that must pass the address to `init --public-url` first.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// cleanEnv is the test process environment without GMTRUST_* variables, so
// a developer's settings cannot steer the instance under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GMTRUST_") {
			env = append(env, kv)
		}
	}
	return env
}

// instance is one gmtrust data directory driven through the binary.
type instance struct {
	t     testing.TB
	bin   string
	dir   string // data directory
	addr  string // host:port of serve and of the public URL
	token string
	srv   *server // the running `serve`, nil when stopped
	http  *http.Client
}

type initOptions struct {
	algorithm string // "" = sm2
	database  string // "" = SQLite in the data directory
}

// newInstance runs `gmtrust init` in a fresh directory (not yet serving).
func newInstance(t testing.TB, o initOptions) *instance {
	t.Helper()
	bin := os.Getenv(binaryEnv)
	if bin == "" {
		t.Fatalf("%s is not set: run these tests with go test, whose TestMain builds the binary", binaryEnv)
	}
	if o.algorithm == "" {
		o.algorithm = "sm2"
	}
	in := &instance{
		t: t, bin: bin, dir: filepath.Join(t.TempDir(), "data"), addr: freeAddr(t),
		http: &http.Client{Timeout: 30 * time.Second},
	}
	args := []string{"init", "--algorithm", o.algorithm, "--name", "E2E " + o.algorithm,
		"--public-url", "http://" + in.addr, "--listen", in.addr}
	if o.database != "" {
		args = append(args, "--database", o.database)
	}
	in.must(args...)
	tok, err := os.ReadFile(filepath.Join(in.dir, "admin.token"))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	in.token = strings.TrimSpace(string(tok))
	t.Cleanup(func() {
		if in.srv != nil {
			in.srv.kill()
		}
	})
	return in
}

// cli runs the binary on this instance's data directory.
func (in *instance) cli(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.Command(in.bin, append(args, "--data-dir", in.dir)...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// must runs the binary and fails the test if it exits non-zero.
func (in *instance) must(args ...string) string {
	in.t.Helper()
	out, errOut, err := in.cli(args...)
	if err != nil {
		in.t.Fatalf("gmtrust %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// mustJSON runs the binary with --json and decodes its output into v.
func (in *instance) mustJSON(v any, args ...string) {
	in.t.Helper()
	out := in.must(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		in.t.Fatalf("gmtrust %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// stopTimeout bounds a graceful stop after SIGTERM.
const stopTimeout = 5 * time.Second

// server is a running `gmtrust serve`.
type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	log  *os.File
}

func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// start runs `gmtrust serve` and waits until /readyz says ready.
func (in *instance) start() {
	in.t.Helper()
	if in.srv != nil {
		in.t.Fatal("server already running")
	}
	logf, err := os.CreateTemp(filepath.Dir(in.dir), "serve-*.log")
	if err != nil {
		in.t.Fatal(err)
	}
	cmd := exec.Command(in.bin, "serve", "--data-dir", in.dir, "--listen", in.addr)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		in.t.Fatalf("serve: %v", err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	in.srv = s
	in.t.Cleanup(func() {
		if in.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			in.t.Logf("serve log %s:\n%s", logf.Name(), b)
		}
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.done:
			in.srv = nil
			b, _ := os.ReadFile(logf.Name())
			in.t.Fatalf("serve exited before it was ready: %v\n%s", s.err, b)
		default:
		}
		resp, err := in.http.Get(in.url("/readyz"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("serve not ready after 20 s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit within a few seconds: an
// orchestrator stops the service this way and must not lose work.
func (in *instance) stop() {
	in.t.Helper()
	s := in.srv
	if s == nil {
		in.t.Fatal("server not running")
	}
	in.srv = nil
	// Drop the client's idle keep-alive connections first. Go's transport
	// may hold one it dialed for a parallel request but never used, and
	// http.Server.Shutdown counts such a silent connection as active for
	// its first 5 s, which would measure the client, not the server.
	in.http.CloseIdleConnections()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		in.t.Fatalf("SIGTERM: %v", err)
	}
	// An idle server stops in milliseconds; the margin is for a CI
	// machine busy with other packages' tests.
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
		in.t.Fatalf("serve did not exit within %v of SIGTERM", stopTimeout)
	}
	in.t.Logf("serve stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if s.err != nil {
		in.t.Fatalf("serve exited with %v after SIGTERM, want status 0", s.err)
	}
}

func (in *instance) url(path string) string { return "http://" + in.addr + path }

// response is an HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
}

// do sends a request; body is sent as is when it is []byte, else encoded
// as JSON. token "" sends no Authorization header.
func (in *instance) do(method, path string, body any, token string) response {
	in.t.Helper()
	r, err := in.send(method, path, body, token)
	if err != nil {
		in.t.Fatal(err)
	}
	return r
}

// tryDo is do with the admin token, for goroutines: it returns errors
// instead of failing the test.
func (in *instance) tryDo(method, path string, body any) (response, error) {
	return in.send(method, path, body, in.token)
}

func (in *instance) send(method, path string, body any, token string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, in.url(path), rd)
	if err != nil {
		return response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// api sends an authenticated request and decodes a JSON answer with the
// wanted status into out (when out is not nil).
func (in *instance) api(method, path string, body any, want int, out any) response {
	in.t.Helper()
	r := in.do(method, path, body, in.token)
	if r.status != want {
		in.t.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			in.t.Fatalf("%s %s: decoding %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// The JSON shapes below are written out here, not imported from
// internal/api, because they are the contract clients rely on: renaming a
// field there must break these tests.

type issueReq struct {
	CSR          string `json:"csr"`
	Profile      string `json:"profile"`
	Department   string `json:"department,omitempty"`
	ValidityDays int    `json:"validity_days,omitempty"`
}

type issueResp struct {
	Serial      string   `json:"serial"`
	CA          string   `json:"ca"`
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`
}

type certJSON struct {
	Serial      string   `json:"serial"`
	CA          string   `json:"ca"`
	Status      string   `json:"status"`
	Reason      string   `json:"reason"`
	Profile     string   `json:"profile"`
	Department  string   `json:"department"`
	Subject     string   `json:"subject"`
	SANs        []string `json:"sans"`
	Certificate string   `json:"certificate"`
}

type listResp struct {
	Items      []certJSON `json:"items"`
	NextCursor string     `json:"next_cursor"`
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Rule   string `json:"rule"`
}

// issue issues a certificate through the HTTP API.
func (in *instance) issue(csr []byte, profile, department string) issueResp {
	in.t.Helper()
	var out issueResp
	in.api(http.MethodPost, "/api/v1/certificates", issueReq{CSR: string(csr), Profile: profile, Department: department}, http.StatusCreated, &out)
	if out.Serial == "" || out.Certificate == "" || len(out.Chain) != 2 {
		in.t.Fatalf("issue answer incomplete: %+v", out)
	}
	return out
}

// listAll follows every page of a listing filtered by query.
func (in *instance) listAll(query url.Values, limit int) (items []certJSON, pages int) {
	in.t.Helper()
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("limit", strconv.Itoa(limit))
	for {
		var page listResp
		in.api(http.MethodGet, "/api/v1/certificates?"+q.Encode(), nil, http.StatusOK, &page)
		if len(page.Items) > limit {
			in.t.Fatalf("page of %d items with limit %d", len(page.Items), limit)
		}
		pages++
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			return items, pages
		}
		if pages > 1000 {
			in.t.Fatal("pagination does not end")
		}
		q.Set("cursor", page.NextCursor)
	}
}

// count is the number of certificates the API lists.
func (in *instance) count() int {
	in.t.Helper()
	items, _ := in.listAll(nil, 500)
	return len(items)
}

// errExit reports whether err is a non-zero exit of a command that ran.
func errExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() > 0
}

// decodeProblem decodes an RFC 9457 problem answer; ok is false when the
// content type or the body is not one.
func decodeProblem(r response) (p problem, ok bool) {
	if r.header.Get("Content-Type") != "application/problem+json" {
		return p, false
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return p, false
	}
	return p, p.Status == r.status
}

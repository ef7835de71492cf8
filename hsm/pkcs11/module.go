//go:build cgo

package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// modules is the one piece of process-wide mutable state in this package,
// and it has to be: a PKCS#11 library is loaded once per process and
// C_Initialize may be called only once until C_Finalize, whatever number
// of Managers (tokens) use it. Each entry is reference-counted and
// finalised when its last Manager closes. The mutex guards the map and the
// counts.
var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: make(map[string]*module)}

// module is one loaded PKCS#11 library.
//
// Every C call that uses a session or object handle holds mu for reading
// and first checks that the handle was obtained in the current
// initialisation (gen): after C_Finalize/C_Initialize a library may hand
// out the same handle numbers again, and a stale handle could then name
// another goroutine's session (two goroutines on one SoftHSM session crash
// the process) or another key. Re-initialisation holds mu for writing.
type module struct {
	path string
	ctx  *p11.Ctx
	refs int // guarded by modules.Mutex

	mu          sync.RWMutex
	gen         atomic.Uint64 // written under mu.Lock
	initialized bool          // guarded by mu
	ownsInit    bool          // guarded by mu: we called C_Initialize
	lastRescan  time.Time     // guarded by mu
}

// rescanInterval limits how often a missing token makes the library
// re-initialise to look for it again.
const rescanInterval = time.Second

// openModule loads and initialises the library at path, or shares the one
// already loaded.
func openModule(path string) (*module, error) {
	if path == "" {
		return nil, errors.New("pkcs11: module-path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: %w", path, err)
	}
	// Resolve links so two spellings of one library share one entry.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	} else {
		return nil, fmt.Errorf("pkcs11: module %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("pkcs11: module %s is not a file", path)
	}
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[abs]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := p11.New(abs)
	if ctx == nil {
		return nil, fmt.Errorf("pkcs11: cannot load module %s (not a PKCS#11 library, or missing dependencies)", path)
	}
	m := &module{path: abs, ctx: ctx, refs: 1}
	switch err := ctx.Initialize(); {
	case err == nil:
		m.ownsInit = true
	case errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		// Another library in this process initialised it; it is theirs
		// to finalise.
	default:
		ctx.Destroy()
		return nil, fmt.Errorf("pkcs11: C_Initialize %s: %w", path, err)
	}
	m.initialized = true
	m.gen.Store(1)
	modules.byPath[abs] = m
	return m, nil
}

// release drops one reference and unloads the library with the last.
func (m *module) release() {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.byPath, m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.initialized && m.ownsInit {
		_ = m.ctx.Finalize()
	}
	m.initialized = false
	m.gen.Add(1)
	m.ctx.Destroy()
}

// with runs fn holding the module for reading, if the library is still in
// initialisation gen.
func (m *module) with(gen uint64, fn func(*p11.Ctx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.initialized || m.gen.Load() != gen {
		return errStale
	}
	return fn(m.ctx)
}

// withCurrent runs fn in the current initialisation and passes its gen.
func (m *module) withCurrent(fn func(c *p11.Ctx, gen uint64) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.initialized {
		return p11.Error(p11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	return fn(m.ctx, m.gen.Load())
}

// reinit finalises (if needed) and initialises the library again, unless
// another caller already did so since seenGen. rescan marks a
// re-initialisation made to look for a missing token; those are
// rate-limited because they cost every user of the library its sessions.
func (m *module) reinit(seenGen uint64, rescan bool, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen.Load() != seenGen && m.initialized {
		return nil
	}
	if rescan {
		if now.Sub(m.lastRescan) < rescanInterval {
			return nil
		}
		m.lastRescan = now
	}
	// Finalize fails harmlessly with CKR_CRYPTOKI_NOT_INITIALIZED when
	// someone finalised the library under us.
	_ = m.ctx.Finalize()
	m.gen.Add(1)
	err := m.ctx.Initialize()
	if err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		m.initialized = false
		return fmt.Errorf("%w: C_Initialize %s: %v", ErrTokenUnavailable, m.path, err)
	}
	m.initialized = true
	m.ownsInit = true
	return nil
}

// finalizeForTest calls C_Finalize behind the Managers' backs, as another
// library sharing the module might. It takes the write lock only so that
// no C call is in flight (SoftHSM frees sessions under running calls); it
// leaves gen and initialized alone so that users find out the way they
// would in production: from CKR_CRYPTOKI_NOT_INITIALIZED.
func (m *module) finalizeForTest() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ctx.Finalize()
}

// errStale means a session belongs to an earlier initialisation.
var errStale = errors.New("pkcs11: session from an earlier initialisation of the module")

// Return values after which a session is discarded and the operation
// retried once on a fresh session.
func sessionBroken(err error) bool {
	if errors.Is(err, errStale) {
		return true
	}
	var e p11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_DEVICE_ERROR,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_TOKEN_NOT_RECOGNIZED:
		return true
	}
	return false
}

func isCKR(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

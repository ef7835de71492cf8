//go:build cgo

package pkcs11

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/gmtrust/gmtrust/hsm"
)

// session is a logged-in R/W session. It is used by one goroutine at a
// time: SoftHSM (and other modules) crash rather than fail when two
// threads share a session.
type session struct {
	h     p11.SessionHandle
	slot  uint
	gen   uint64 // module initialisation that opened it
	epoch uint64 // pool epoch that opened it
}

// pool bounds the sessions of one Manager. A token in slots is held for
// every session in use; idle sessions are kept for reuse. When a session
// breaks, epoch moves on and every older idle session is dropped, since
// whatever broke one (token removed, module finalised) broke them all.
type pool struct {
	slots chan struct{}

	mu     sync.Mutex
	idle   []*session // guarded by mu
	epoch  uint64     // guarded by mu
	closed bool       // guarded by mu

	opened atomic.Int64 // sessions opened, for tests and tuning
}

// acquire returns a session for the caller's exclusive use.
func (m *Manager) acquire(ctx context.Context) (*session, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	p := &m.pool
	select {
	case p.slots <- struct{}{}:
	default:
		t := time.NewTimer(m.timeout)
		defer t.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: all %d sessions of token %q busy: %w", ErrPoolExhausted, cap(p.slots), m.label, ctx.Err())
		case <-t.C:
			return nil, fmt.Errorf("%w: all %d sessions of token %q busy for %v", ErrPoolExhausted, cap(p.slots), m.label, m.timeout)
		}
	}
	gen := m.mod.gen.Load()
	p.mu.Lock()
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if s.epoch == p.epoch && s.gen == gen {
			p.mu.Unlock()
			return s, nil
		}
		p.mu.Unlock()
		m.closeSession(s)
		p.mu.Lock()
	}
	epoch := p.epoch
	p.mu.Unlock()

	s, err := m.openSession(epoch)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return s, nil
}

// release returns a healthy session to the pool.
func (m *Manager) release(s *session) {
	p := &m.pool
	p.mu.Lock()
	if p.closed || s.epoch != p.epoch {
		p.mu.Unlock()
		m.closeSession(s)
	} else {
		p.idle = append(p.idle, s)
		p.mu.Unlock()
	}
	<-p.slots
}

// discard closes s instead of reusing it; broken also retires every idle
// session opened before it.
func (m *Manager) discard(s *session, broken bool) {
	p := &m.pool
	if broken {
		p.mu.Lock()
		if s.epoch == p.epoch {
			p.epoch++
		}
		p.mu.Unlock()
	}
	m.closeSession(s)
	<-p.slots
}

// closeIdle closes the idle sessions and marks the pool closed.
func (p *pool) closeIdle(m *Manager) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, s := range idle {
		m.closeSession(s)
	}
}

// closeSession closes s if its handle is still from the current
// initialisation; an older handle may by now belong to someone else.
func (m *Manager) closeSession(s *session) {
	_ = m.mod.with(s.gen, func(c *p11.Ctx) error { return c.CloseSession(s.h) })
}

// openSession opens and logs in a session, re-initialising the module
// when it was finalised and rescanning (rate-limited) when the token is
// missing.
func (m *Manager) openSession(epoch uint64) (*session, error) {
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		seen := m.mod.gen.Load()
		var s *session
		err := m.mod.withCurrent(func(c *p11.Ctx, gen uint64) error {
			seen = gen
			slot, err := m.findSlot(c)
			if err != nil {
				return err
			}
			h, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
			if err != nil {
				return fmt.Errorf("pkcs11: C_OpenSession on token %q: %w", m.label, err)
			}
			// Login state is shared by all sessions of the process on a
			// token, so "already logged in" is success.
			if err := c.Login(h, p11.CKU_USER, m.pin); err != nil && !isCKR(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
				_ = c.CloseSession(h)
				switch {
				case isCKR(err, p11.CKR_PIN_INCORRECT):
					return fmt.Errorf("%w: token %q refused the PIN (%v)", ErrPINIncorrect, m.label, err)
				case isCKR(err, p11.CKR_PIN_LOCKED):
					return fmt.Errorf("pkcs11: token %q: user PIN is locked, unlock it with the SO PIN: %w", m.label, err)
				}
				return fmt.Errorf("pkcs11: login to token %q: %w", m.label, err)
			}
			s = &session{h: h, slot: slot, gen: gen, epoch: epoch}
			return nil
		})
		if err == nil {
			m.pool.opened.Add(1)
			return s, nil
		}
		last = err
		switch {
		case isCKR(err, p11.CKR_CRYPTOKI_NOT_INITIALIZED):
			if rerr := m.mod.reinit(seen, false, m.now()); rerr != nil {
				return nil, rerr
			}
		case errors.Is(err, errTokenMissing) || sessionBroken(err):
			if rerr := m.mod.reinit(seen, true, m.now()); rerr != nil {
				return nil, rerr
			}
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %v", ErrTokenUnavailable, last)
}

// findObjects returns the handles of the objects matching tmpl; max 0
// means all.
func findObjects(c *p11.Ctx, s *session, tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	if err := c.FindObjectsInit(s.h, tmpl); err != nil {
		return nil, fmt.Errorf("pkcs11: C_FindObjectsInit: %w", err)
	}
	var out []p11.ObjectHandle
	var ferr error
	for {
		n := 64
		if max > 0 {
			n = max - len(out)
		}
		hs, _, err := c.FindObjects(s.h, n)
		if err != nil {
			ferr = fmt.Errorf("pkcs11: C_FindObjects: %w", err)
			break
		}
		out = append(out, hs...)
		if len(hs) < n || max > 0 && len(out) >= max {
			break
		}
	}
	if err := c.FindObjectsFinal(s.h); err != nil && ferr == nil {
		ferr = fmt.Errorf("pkcs11: C_FindObjectsFinal: %w", err)
	}
	return out, ferr
}

// getAttrs reads attributes of one object.
func getAttrs(c *p11.Ctx, s *session, h p11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*p11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = p11.NewAttribute(t, nil)
	}
	attrs, err := c.GetAttributeValue(s.h, h, tmpl)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: C_GetAttributeValue: %w", err)
	}
	out := make(map[uint][]byte, len(attrs))
	for _, a := range attrs {
		out[a.Type] = a.Value
	}
	return out, nil
}

// attrUint decodes a CK_ULONG attribute (native byte order, as the module
// wrote it).
func attrUint(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

func attrBool(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// objRef finds one object by template and caches its handle for the
// module initialisation it was found in. Handles of token objects are
// valid in every session of the application until C_Finalize, so finding
// once per initialisation is enough (see BenchmarkHandleLookup for the
// cost of finding per operation instead).
type objRef struct {
	what string
	tmpl []*p11.Attribute
	cur  atomic.Pointer[cachedHandle]
}

type cachedHandle struct {
	gen uint64
	h   p11.ObjectHandle
}

func (o *objRef) handle(c *p11.Ctx, s *session) (p11.ObjectHandle, error) {
	if ch := o.cur.Load(); ch != nil && ch.gen == s.gen {
		return ch.h, nil
	}
	hs, err := findObjects(c, s, o.tmpl, 2)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("%w: %s", hsm.ErrKeyNotFound, o.what)
	case 1:
	default:
		return 0, fmt.Errorf("pkcs11: more than one object matches %s", o.what)
	}
	o.cur.Store(&cachedHandle{gen: s.gen, h: hs[0]})
	return hs[0], nil
}

func (o *objRef) forget() { o.cur.Store(nil) }

// withHandle runs fn with the object's handle and, if the handle has gone
// stale (the object was deleted and re-created), finds it again once.
func (o *objRef) withHandle(c *p11.Ctx, s *session, fn func(h p11.ObjectHandle) error) error {
	for try := 0; ; try++ {
		h, err := o.handle(c, s)
		if err != nil {
			return err
		}
		err = fn(h)
		if try == 0 && (isCKR(err, p11.CKR_OBJECT_HANDLE_INVALID) || isCKR(err, p11.CKR_KEY_HANDLE_INVALID)) {
			o.forget()
			continue
		}
		return err
	}
}

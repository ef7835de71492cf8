package ocsp

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The cache maps (issuer, CertID hash algorithm, serial) to a signed
// response. It is sharded to keep lock contention low on two cores and
// evicts with CLOCK (second chance): a hit takes the read lock and sets an
// atomic flag, so the hot path never takes a write lock.
//
// Fills are guarded by generations: a filler reads the shard's generation
// before it goes to the store and adds its result only if no eviction or
// flush happened in between. A response read just before a revocation was
// recorded can therefore not land in the cache after the revocation evicted
// the certificate.

const (
	cacheShards = 64
	// keySize is the largest cache key: issuer index, hash, and a serial
	// of at most 20 octets (RFC 5280), which ParseRequest enforces.
	keySize = 2 + maxSerialLen
)

// entry is a cached answer for one certificate and hash. It is immutable
// once added, except for the CLOCK reference bit and the queued flag.
//
// 100 000 cached responses are most of a responder's heap, and marking
// them is most of a collection's work, during which the responder runs
// short of CPU. So an entry is two objects (itself, and one block holding
// der and the text its headers are cut from), its pointers come first,
// and its times are instants (Unix nanoseconds, no *time.Location): the
// collector scans an object only up to its last pointer: 13 words here,
// against 41 with eight time.Time fields ahead of hdr.
type entry struct {
	// der is the signed response; nil for a status-only entry, which is
	// never cached.
	der []byte
	// hdr holds the response header values, formatted once so that
	// serving a hit formats nothing but max-age, as substrings of one
	// string; header(i) hands one out as the []string net/http wants
	// without allocating.
	hdr [hdrCount]string

	status                            Status
	reason                            int
	revokedAt, thisUpdate, nextUpdate instant
	// expires is when the cache stops serving the entry without reading
	// the store again (unless the invalidation listener vouches for it,
	// see Responder.servable); until revalidateUntil (half its validity)
	// a read of the certificate's status is enough to keep it.
	expires, revalidateUntil instant
	// refreshAt, some time before expires, is when a hit asks the
	// background refresher (RunRefresher) to confirm the entry, so that
	// entries in use are renewed before the request path has to wait
	// for the store; queued marks it asked.
	refreshAt instant
	queued    atomic.Bool
	// verifiedAt is when the status was read (the entry was made or
	// renewed no earlier than the read); verifyBy bounds how long the
	// invalidation listener may vouch for it (Responder.servable), zero
	// when it may not.
	verifiedAt, verifyBy instant
	// httpMaxAge caps Cache-Control max-age (shorter for "unknown").
	httpMaxAge time.Duration

	ref  atomic.Bool
	slot int // position in the shard's CLOCK ring
}

// Indexes of entry.hdr.
const (
	hdrETag         = iota // the quoted ETag
	hdrLastModified        // thisUpdate
	hdrExpires             // nextUpdate; "" when there is none
	hdrLength              // Content-Length
	hdrCacheControl        // Cache-Control for max-age = httpMaxAge
	hdrCount
)

// instant is a time in Unix nanoseconds, 0 for the zero time.Time.
type instant int64

func instantOf(t time.Time) instant {
	if t.IsZero() {
		return 0
	}
	return instant(t.UnixNano())
}

// time returns i as a UTC time.Time (the zero one for 0).
func (i instant) time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i)).UTC()
}

// header returns header value i as a one-element slice of e.hdr. Its
// capacity is 1, so a caller appending to it gets a copy.
func (e *entry) header(i int) []string { return e.hdr[i : i+1 : i+1] }

// etag returns the entry's quoted ETag.
func (e *entry) etag() string { return e.hdr[hdrETag] }

// newEntry makes a cache entry for a signed response, cached at now.
func (r *Responder) newEntry(der []byte, status Status, reason int, revokedAt, thisUpdate, nextUpdate, now time.Time, httpMaxAge time.Duration) *entry {
	refreshAt, expires, verifyBy := r.cacheExpiry(now, status)
	e := &entry{
		der: der, status: status, reason: reason, revokedAt: instantOf(revokedAt),
		thisUpdate: instantOf(thisUpdate), nextUpdate: instantOf(nextUpdate), expires: expires, refreshAt: refreshAt,
		verifiedAt: instantOf(now), verifyBy: verifyBy, httpMaxAge: httpMaxAge,
	}
	sum := sha256.Sum256(der)
	var b [256]byte
	buf := append(b[:0], '"')
	buf = hex.AppendEncode(buf, sum[:8])
	buf = append(buf, '"')
	var ends [hdrCount]int
	ends[hdrETag] = len(buf)
	buf = thisUpdate.UTC().AppendFormat(buf, http.TimeFormat)
	ends[hdrLastModified] = len(buf)
	if !nextUpdate.IsZero() {
		buf = nextUpdate.UTC().AppendFormat(buf, http.TimeFormat)
		e.revalidateUntil = instantOf(thisUpdate.Add(nextUpdate.Sub(thisUpdate) / 2))
	}
	ends[hdrExpires] = len(buf)
	buf = strconv.AppendInt(buf, int64(len(der)), 10)
	ends[hdrLength] = len(buf)
	buf = appendCacheControl(buf, httpMaxAge)
	ends[hdrCacheControl] = len(buf)
	// The response and the header text share one allocation: one heap
	// object less per cached response for the collector to mark. The
	// header strings are views of its tail, which is never written after
	// this (entries are immutable, and so is what e.der hands out).
	block := make([]byte, len(der)+len(buf))
	copy(block, der)
	copy(block[len(der):], buf)
	e.der = block[:len(der):len(der)]
	all, start := unsafe.String(&block[len(der)], len(buf)), 0
	for i, end := range ends {
		e.hdr[i] = all[start:end]
		start = end
	}
	return e
}

// hasStatus reports whether e answers what the store now says of its
// certificate: st, or nil for a serial the store does not know.
func (e *entry) hasStatus(st *CertStatus) bool {
	if st == nil {
		return e.status == Unknown
	}
	status, reason, revokedAt := certStatus(*st)
	return status == e.status && reason == e.reason && instantOf(revokedAt) == e.revokedAt
}

// renewed returns a copy of e whose cache age starts again at now, once
// the store confirmed its status. The formatted headers are shared: they
// never change.
func (r *Responder) renewed(e *entry, now time.Time) *entry {
	refreshAt, expires, verifyBy := r.cacheExpiry(now, e.status)
	return &entry{
		der: e.der, status: e.status, reason: e.reason, revokedAt: e.revokedAt,
		thisUpdate: e.thisUpdate, nextUpdate: e.nextUpdate, expires: expires, refreshAt: refreshAt, revalidateUntil: e.revalidateUntil,
		verifiedAt: instantOf(now), verifyBy: verifyBy, httpMaxAge: e.httpMaxAge, hdr: e.hdr,
	}
}

// cacheKey appends the key of (issuer, hash, serial) to dst, which should
// have room for keySize bytes so that building a key does not allocate.
func cacheKey(dst []byte, issuer byte, h HashAlg, serial *big.Int) []byte {
	n := (serial.BitLen() + 7) / 8
	dst = append(dst, issuer, byte(h))
	start := len(dst)
	for range n {
		dst = append(dst, 0)
	}
	serial.FillBytes(dst[start:])
	return dst
}

// slotKey is a cache key held in place: its length, then its bytes. A
// string key would be one more heap object per entry for the collector
// to mark (and the ring a slice of pointers to scan); with fixed-size
// keys the map and the ring hold no pointers to keys at all.
type slotKey [1 + keySize]byte

func toSlotKey(key []byte) slotKey {
	var k slotKey
	k[0] = byte(copy(k[1:], key))
	return k
}

// bytes returns the key k holds.
func (k *slotKey) bytes() []byte { return k[1 : 1+k[0]] }

type cacheShard struct {
	mu   sync.RWMutex
	m    map[slotKey]*entry
	ring []slotKey // CLOCK ring of keys; the zero key marks a free slot
	hand int
	gen  uint64
	_    [64]byte // keep shards on separate cache lines
}

type cache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

func newCache(entries int) *cache {
	per := max(1, (entries+cacheShards-1)/cacheShards)
	c := &cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[slotKey]*entry, per)
		c.shards[i].ring = make([]slotKey, per)
	}
	return c
}

func (c *cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry for key, or nil.
func (c *cache) get(key []byte) *entry {
	s := c.shard(key)
	k := toSlotKey(key)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e != nil && !e.ref.Load() {
		e.ref.Store(true)
	}
	return e
}

// generation returns the shard generation to pass to add.
func (c *cache) generation(key []byte) uint64 {
	s := c.shard(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// add stores e under key unless the shard was evicted from or flushed
// since gen was read. It reports whether it stored.
func (c *cache) add(key []byte, e *entry, gen uint64) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return false
	}
	k := toSlotKey(key)
	if old, ok := s.m[k]; ok {
		e.slot = old.slot
		s.m[k] = e
		return true
	}
	// CLOCK: advance the hand to a free slot or an entry not referenced
	// since the hand last passed, clearing reference bits on the way.
	// After two turns (hits setting bits again meanwhile) take whatever
	// is under the hand.
	for i := 0; ; i++ {
		victim := s.ring[s.hand]
		if victim[0] == 0 {
			break
		}
		ve := s.m[victim]
		if ve == nil || !ve.ref.Load() || i >= 2*len(s.ring) {
			delete(s.m, victim)
			break
		}
		ve.ref.Store(false)
		s.hand = (s.hand + 1) % len(s.ring)
	}
	s.ring[s.hand] = k
	e.slot = s.hand
	s.m[k] = e
	s.hand = (s.hand + 1) % len(s.ring)
	return true
}

// replace stores e under key in place of old, which must still be the
// entry there: an entry evicted (a revocation) or replaced meanwhile is
// left alone. It reports whether it stored.
func (c *cache) replace(key []byte, old, e *entry) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := toSlotKey(key)
	if s.m[k] != old {
		return false
	}
	e.slot = old.slot
	e.ref.Store(old.ref.Load())
	s.m[k] = e
	return true
}

// evict removes key and invalidates fills in progress in its shard.
func (c *cache) evict(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	k := toSlotKey(key)
	if e, ok := s.m[k]; ok {
		s.ring[e.slot] = slotKey{}
		delete(s.m, k)
	}
}

// flush empties the cache and invalidates every fill in progress.
func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.m)
		clear(s.ring)
		s.mu.Unlock()
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

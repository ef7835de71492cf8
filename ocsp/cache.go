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

// entry is an answer for one certificate and hash: what the responder
// passes around, and what the cache hands out. It is immutable. The cache
// does not keep entries as such (see cacheShard): add copies one in, and
// get returns a new entry whose der and header strings are views of the
// cache's memory.
type entry struct {
	// der is the signed response; nil for a status-only entry, which is
	// never cached.
	der []byte
	// hdr holds the response header values, formatted once so that
	// serving a hit formats nothing but max-age, as substrings of one
	// string; header(i) hands one out as the []string net/http wants
	// without allocating.
	hdr [hdrCount]string
	meta
	// version names the cache record an entry was read from (zero for
	// one that was not), so that replace and markQueued act only on the
	// record the caller saw.
	version uint64
}

// meta is what an entry says besides its bytes. It holds no pointers, so
// that a cache record can hold it as it is.
type meta struct {
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
	// for the store.
	refreshAt instant
	// verifiedAt is when the status was read (the entry was made or
	// renewed no earlier than the read); verifyBy bounds how long the
	// invalidation listener may vouch for it (Responder.servable), zero
	// when it may not.
	verifiedAt, verifyBy instant
	// httpMaxAge caps Cache-Control max-age (shorter for "unknown").
	httpMaxAge time.Duration
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
	e := &entry{der: der, meta: meta{
		status: status, reason: reason, revokedAt: instantOf(revokedAt),
		thisUpdate: instantOf(thisUpdate), nextUpdate: instantOf(nextUpdate), expires: expires, refreshAt: refreshAt,
		verifiedAt: instantOf(now), verifyBy: verifyBy, httpMaxAge: httpMaxAge,
	}}
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
	// The response and the header text share one allocation, which is
	// never written after this (entries are immutable, and so is what
	// e.der hands out): the header strings are views of its tail.
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
	m := e.meta
	m.expires, m.refreshAt, m.verifiedAt, m.verifyBy = expires, refreshAt, instantOf(now), verifyBy
	return &entry{der: e.der, hdr: e.hdr, meta: m}
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

// slotKey is a cache key held in place: its length, then its bytes. The
// zero slotKey (length 0) marks a free record.
type slotKey [1 + keySize]byte

func toSlotKey(key []byte) slotKey {
	var k slotKey
	k[0] = byte(copy(k[1:], key))
	return k
}

// bytes returns the key k holds.
func (k *slotKey) bytes() []byte { return k[1 : 1+k[0]] }

// A shard keeps no heap object per entry. 100 000 cached responses are
// most of a responder's heap, and a collection visits every object it can
// reach: when each entry, its response and its key were objects of their
// own, marking them took 20-50 ms of CPU per collection and the
// collections set the p99 of a loaded responder (BENCHMARKS.md). Here an
// entry is a record in recs, a pointer-free slice; its key maps to the
// record's index in a pointer-free map; its response and header text are
// bytes in the shard's arena. The collector marks a few objects per shard
// and scans none of them but the arena's short list of chunks: 1-3 ms of
// mark CPU per collection at 100 000 entries.
type cacheShard struct {
	mu sync.RWMutex
	m  map[slotKey]uint32 // key → index in recs
	// recs grows to max records, then is the CLOCK ring.
	recs    []record
	max     int
	hand    int
	gen     uint64
	version uint64 // the last version given to a record
	arena   arena
	// compactions counts arena compactions (for tests).
	compactions int
	_           [64]byte // keep shards on separate cache lines
}

// record is a cached entry as its shard holds it.
type record struct {
	key slotKey // zero for a free record
	// The entry's bytes in the arena: der, then the header text, whose
	// values end at hdrEnd (offsets into the text).
	chunk, off, derLen uint32
	hdrEnd             [hdrCount]uint16
	meta
	version uint64
	// ref is the CLOCK reference bit, set by hits under the read lock;
	// queued marks the record asked of the refresher (queueRefresh).
	ref, queued atomic.Bool
}

// size is how many arena bytes r holds.
func (r *record) size() int { return int(r.derLen) + int(r.hdrEnd[hdrCount-1]) }

// arena holds the bytes of a shard's entries in chunks that are written
// once: an entry is appended where nothing was written before, and
// nothing is ever written over. So the slices and strings a view hands
// out (views, not copies) never change while a reader holds them, and
// the collector keeps their chunk alive until the reader lets go, however
// long after the shard dropped it. A chunk is dropped when none of its
// entries is left; when more is held than twice what is live, the live
// entries are copied into new chunks (compact).
type arena struct {
	chunks [][]byte // nil where a chunk was dropped
	live   []int    // bytes of live entries in each chunk
	cur    int      // the chunk appended to; -1 before the first
	held   int      // capacity of the chunks held
	inUse  int      // bytes of live entries
}

const (
	// Chunks grow from minChunk to maxChunk, so that a small cache holds
	// little and a large one few chunks (100 000 SM2 entries: about 7
	// per shard).
	minChunk = 16 << 10
	maxChunk = 256 << 10
)

// alloc returns n unwritten bytes of the arena and where they are.
func (a *arena) alloc(n int) (chunk, off uint32, b []byte) {
	if a.cur < 0 || cap(a.chunks[a.cur])-len(a.chunks[a.cur]) < n {
		size := minChunk
		if a.cur >= 0 {
			size = min(2*cap(a.chunks[a.cur]), maxChunk)
		}
		a.cur = a.slot()
		a.chunks[a.cur] = make([]byte, 0, max(size, n))
		a.held += max(size, n)
	}
	c := a.chunks[a.cur]
	a.chunks[a.cur] = c[:len(c)+n]
	a.live[a.cur] += n
	a.inUse += n
	return uint32(a.cur), uint32(len(c)), c[len(c) : len(c)+n : len(c)+n]
}

// slot returns the index of a dropped chunk to reuse, or a new one.
func (a *arena) slot() int {
	for i, c := range a.chunks {
		if c == nil {
			return i
		}
	}
	a.chunks = append(a.chunks, nil)
	a.live = append(a.live, 0)
	return len(a.chunks) - 1
}

// release gives back n bytes of chunk, dropping the chunk when nothing
// of it is live and it is not the one appended to.
func (a *arena) release(chunk uint32, n int) {
	if n == 0 {
		return // an entry without bytes is in no chunk
	}
	a.live[chunk] -= n
	a.inUse -= n
	if a.live[chunk] == 0 && int(chunk) != a.cur {
		a.held -= cap(a.chunks[chunk])
		a.chunks[chunk] = nil
	}
}

// wasteful reports whether the arena holds more than twice its live bytes
// (and more than a chunk besides, so that a small cache never compacts
// over and over).
func (a *arena) wasteful() bool { return a.held-a.inUse > a.inUse+maxChunk }

// view returns record r as an entry whose der and header strings are
// views of the arena.
func (s *cacheShard) view(r *record) *entry {
	e := &entry{meta: r.meta, version: r.version}
	n := r.size()
	if n == 0 {
		return e
	}
	b := s.arena.chunks[r.chunk][r.off : int(r.off)+n : int(r.off)+n]
	if r.derLen > 0 {
		e.der = b[:r.derLen:r.derLen]
	}
	if text := b[r.derLen:]; len(text) > 0 {
		all, start := unsafe.String(&text[0], len(text)), 0
		for i, end := range r.hdrEnd {
			e.hdr[i] = all[start:end]
			start = int(end)
		}
	}
	return e
}

// holds reports whether e's bytes are r's: e was renewed from a view of r.
func (s *cacheShard) holds(r *record, e *entry) bool {
	if len(e.der) == 0 || len(e.der) != int(r.derLen) {
		return false
	}
	return unsafe.SliceData(e.der) == &s.arena.chunks[r.chunk][r.off]
}

// put stores e in record i under k, with a new version. Bytes the record
// already holds (e renewed from a view of it) are kept; others are copied
// into the arena.
func (s *cacheShard) put(i uint32, k slotKey, e *entry) {
	r := &s.recs[i]
	if r.key[0] == 0 || !s.holds(r, e) {
		if r.key[0] != 0 {
			s.arena.release(r.chunk, r.size())
		}
		s.copyIn(r, e)
	}
	r.key = k
	r.meta = e.meta
	s.version++
	r.version = s.version
	r.queued.Store(false)
	if s.arena.wasteful() {
		s.compact()
	}
}

// copyIn copies e's der and header text into the arena as r's bytes.
func (s *cacheShard) copyIn(r *record, e *entry) {
	n := len(e.der)
	for _, h := range e.hdr {
		n += len(h)
	}
	r.chunk, r.off, r.derLen, r.hdrEnd = 0, 0, 0, [hdrCount]uint16{}
	if n == 0 {
		return
	}
	c, off, b := s.arena.alloc(n)
	at := copy(b, e.der)
	for i, h := range e.hdr {
		at += copy(b[at:], h)
		r.hdrEnd[i] = uint16(at - len(e.der))
	}
	r.chunk, r.off, r.derLen = c, off, uint32(len(e.der))
}

// compact copies the live entries into new chunks and drops the old
// ones. It costs a copy of the shard's live bytes (about 2 MB for 100 000
// SM2 entries over 64 shards, under a millisecond), and is due once as
// many bytes have been given back as are live: for entries re-signed
// every 12 hours, about twice a day per shard.
func (s *cacheShard) compact() {
	s.compactions++
	old := s.arena
	s.arena = arena{cur: -1}
	for i := range s.recs {
		r := &s.recs[i]
		if n := r.size(); r.key[0] != 0 && n > 0 {
			c, off, b := s.arena.alloc(n)
			copy(b, old.chunks[r.chunk][r.off:int(r.off)+n])
			r.chunk, r.off = c, off
		}
	}
}

// clearRecord frees record i.
func (s *cacheShard) clearRecord(i uint32) {
	r := &s.recs[i]
	if r.key[0] != 0 {
		s.arena.release(r.chunk, r.size())
	}
	r.key = slotKey{}
	r.chunk, r.off, r.derLen, r.hdrEnd = 0, 0, 0, [hdrCount]uint16{}
	r.ref.Store(false)
	r.queued.Store(false)
}

type cache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

func newCache(entries int) *cache {
	per := max(1, (entries+cacheShards-1)/cacheShards)
	c := &cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[slotKey]uint32)
		s.max = per
		s.arena.cur = -1
	}
	return c
}

func (c *cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry for key, or nil. The entry is the one allocation
// of a hit.
func (c *cache) get(key []byte) *entry {
	s := c.shard(key)
	k := toSlotKey(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.m[k]
	if !ok {
		return nil
	}
	r := &s.recs[i]
	if !r.ref.Load() {
		r.ref.Store(true)
	}
	return s.view(r)
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
	if i, ok := s.m[k]; ok {
		s.put(i, k, e)
		return true
	}
	if len(s.recs) < s.max {
		s.recs = append(s.recs, record{})
		i := uint32(len(s.recs) - 1)
		s.m[k] = i
		s.put(i, k, e)
		return true
	}
	// CLOCK: advance the hand to a free record or one not referenced
	// since the hand last passed, clearing reference bits on the way.
	// After two turns (hits setting bits again meanwhile) take whatever
	// is under the hand.
	for turns := 0; ; turns++ {
		r := &s.recs[s.hand]
		if r.key[0] == 0 {
			break
		}
		if !r.ref.Load() || turns >= 2*len(s.recs) {
			delete(s.m, r.key)
			s.clearRecord(uint32(s.hand))
			break
		}
		r.ref.Store(false)
		s.hand = (s.hand + 1) % len(s.recs)
	}
	i := uint32(s.hand)
	s.m[k] = i
	s.put(i, k, e)
	s.hand = (s.hand + 1) % len(s.recs)
	return true
}

// replace stores e under key in place of old, which must still be the
// entry there (the same version): an entry evicted (a revocation) or
// replaced meanwhile is left alone. It reports whether it stored.
func (c *cache) replace(key []byte, old, e *entry) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := toSlotKey(key)
	i, ok := s.m[k]
	if !ok || s.recs[i].version != old.version {
		return false
	}
	s.put(i, k, e)
	return true
}

// markQueued sets the queued flag of the record under key if it is still
// version and the flag was clear; it reports whether it set it. The flag
// stays set until the record is replaced or unmarkQueued clears it.
func (c *cache) markQueued(key []byte, version uint64) bool {
	s := c.shard(key)
	k := toSlotKey(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.m[k]
	if !ok || s.recs[i].version != version {
		return false
	}
	q := &s.recs[i].queued
	return !q.Load() && q.CompareAndSwap(false, true)
}

// unmarkQueued clears what markQueued set.
func (c *cache) unmarkQueued(key []byte, version uint64) {
	s := c.shard(key)
	k := toSlotKey(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i, ok := s.m[k]; ok && s.recs[i].version == version {
		s.recs[i].queued.Store(false)
	}
}

// evict removes key and invalidates fills in progress in its shard.
func (c *cache) evict(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	k := toSlotKey(key)
	if i, ok := s.m[k]; ok {
		delete(s.m, k)
		s.clearRecord(i)
		if s.arena.wasteful() {
			s.compact()
		}
	}
}

// flush empties the cache and invalidates every fill in progress.
func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.m)
		s.recs = s.recs[:0]
		s.hand = 0
		s.arena = arena{cur: -1}
		s.mu.Unlock()
	}
}

func (c *cache) len() int {
	n, _ := c.size()
	return n
}

// size returns how many entries the cache holds and how many bytes its
// arenas hold for them.
func (c *cache) size() (entries, held int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.m)
		held += s.arena.held
		s.mu.RUnlock()
	}
	return entries, held
}

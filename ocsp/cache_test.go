package ocsp

import (
	"bytes"
	"fmt"
	"math/big"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// sameShardKeys returns n distinct keys that all hash to shard 0 of c, so
// a test can watch CLOCK at work in one shard.
func sameShardKeys(c *cache, n int) [][]byte {
	var keys [][]byte
	for i := int64(1); len(keys) < n; i++ {
		k := cacheKey(nil, 0, HashSHA1, big.NewInt(i))
		if c.shard(k) == &c.shards[0] {
			keys = append(keys, k)
		}
	}
	return keys
}

func TestCacheKey(t *testing.T) {
	big20 := new(big.Int).SetBytes(bytes.Repeat([]byte{0x7f}, 20))
	tests := []struct {
		issuer byte
		h      HashAlg
		serial *big.Int
	}{
		{0, HashSHA1, big.NewInt(0)},
		{0, HashSHA1, big.NewInt(1)},
		{0, HashSHA1, big.NewInt(256)},
		{0, HashSM3, big.NewInt(1)},
		{1, HashSHA1, big.NewInt(1)},
		{0, HashSHA1, big20},
		{0, HashSHA1, new(big.Int).Rsh(big20, 8)},
	}
	seen := map[string]int{}
	for i, tt := range tests {
		var kb [keySize]byte
		k := cacheKey(kb[:0], tt.issuer, tt.h, tt.serial)
		if len(k) > keySize {
			t.Errorf("%d: key of %d bytes", i, len(k))
		}
		if j, dup := seen[string(k)]; dup {
			t.Errorf("cases %d and %d share key %x", j, i, k)
		}
		seen[string(k)] = i
	}
}

func TestCacheClock(t *testing.T) {
	c := newCache(4 * cacheShards) // 4 entries per shard
	keys := sameShardKeys(c, 8)
	e := func() *entry { return &entry{der: []byte{1}} }
	for _, k := range keys[:4] {
		if !c.add(k, e(), c.generation(k)) {
			t.Fatal("add refused")
		}
	}
	// keys[1] and keys[3] are hit: they get a second chance.
	c.get(keys[1])
	c.get(keys[3])
	for _, k := range keys[4:6] {
		c.add(k, e(), c.generation(k))
	}
	s := &c.shards[0]
	if len(s.m) != 4 {
		t.Fatalf("shard holds %d entries, capacity 4", len(s.m))
	}
	for i, want := range []bool{false, true, false, true, true, true} {
		if got := c.get(keys[i]) != nil; got != want {
			t.Errorf("key %d cached: %v, want %v", i, got, want)
		}
	}
	// Replacing an entry keeps its slot and does not grow the shard.
	c.add(keys[1], e(), c.generation(keys[1]))
	if len(s.m) != 4 {
		t.Fatalf("replacing grew the shard to %d", len(s.m))
	}
	// Hits on everything cannot make the shard overflow either.
	for _, k := range keys {
		c.get(k)
		c.add(k, e(), c.generation(k))
		for _, k := range keys {
			c.get(k)
		}
	}
	if len(s.m) > 4 {
		t.Fatalf("shard holds %d entries, capacity 4", len(s.m))
	}
	// The records and the map agree.
	n := 0
	for i := range s.recs {
		r := &s.recs[i]
		if r.key[0] == 0 {
			continue
		}
		n++
		if j, ok := s.m[r.key]; !ok || j != uint32(i) {
			t.Errorf("record %d holds %x, which the map does not place there", i, r.key)
		}
	}
	if n != len(s.m) {
		t.Errorf("records hold %d keys, map %d", n, len(s.m))
	}
}

func TestCacheBound(t *testing.T) {
	c := newCache(1000)
	limit := ((1000 + cacheShards - 1) / cacheShards) * cacheShards
	for i := range 20000 {
		k := cacheKey(nil, byte(i%3), HashSHA256, big.NewInt(int64(i)))
		c.add(k, &entry{}, c.generation(k))
		if i%7 == 0 {
			c.get(k)
		}
	}
	if n := c.len(); n > limit || n < limit/2 {
		t.Fatalf("cache holds %d entries, bound %d", n, limit)
	}
}

// TestCacheGeneration: a fill that started before an eviction or a flush
// in its shard is not stored: it may carry a status read before a
// revocation.
func TestCacheGeneration(t *testing.T) {
	c := newCache(1024)
	keys := sameShardKeys(c, 2)
	k, other := keys[0], keys[1]
	tests := []struct {
		name    string
		between func()
		stored  bool
	}{
		{"nothing in between", func() {}, true},
		{"eviction of the same key", func() { c.evict(k) }, false},
		{"eviction of another key in the shard", func() { c.evict(other) }, false},
		{"flush", c.flush, false},
		{"a hit", func() { c.get(other) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.evict(k)
			gen := c.generation(k)
			tt.between()
			if got := c.add(k, &entry{der: []byte("x")}, gen); got != tt.stored {
				t.Errorf("add = %v, want %v", got, tt.stored)
			}
			if got := c.get(k) != nil; got != tt.stored {
				t.Errorf("cached = %v, want %v", got, tt.stored)
			}
		})
	}
	c.flush()
	if c.len() != 0 {
		t.Errorf("%d entries after flush", c.len())
	}
}

// TestCacheHitAllocs: a hit builds its key on the stack and allocates
// only the entry it returns.
func TestCacheHitAllocs(t *testing.T) {
	c := newCache(64)
	serial := new(big.Int).SetBytes(bytes.Repeat([]byte{0x5a}, 16))
	k := cacheKey(nil, 0, HashSHA1, serial)
	c.add(k, &entry{der: []byte{1}}, c.generation(k))
	allocs := testing.AllocsPerRun(100, func() {
		var kb [keySize]byte
		if c.get(cacheKey(kb[:0], 0, HashSHA1, serial)) == nil {
			panic("miss")
		}
	})
	if allocs != 1 {
		t.Errorf("%v allocations per hit, want 1", allocs)
	}
}

// testEntry is an entry whose bytes tell its key and generation n apart
// from every other, of a size that varies with both.
func testEntry(key []byte, n int) *entry {
	der := fmt.Appendf(nil, "%x/%d/", key, n)
	der = append(der, bytes.Repeat([]byte{byte(n)}, 200+(n*37+int(key[len(key)-1]))%900)...)
	e := &entry{der: der, meta: meta{status: Good, reason: -1, thisUpdate: instant(n)}}
	e.hdr[hdrETag] = fmt.Sprintf("%q", fmt.Sprint(n))
	e.hdr[hdrLastModified] = "Fri, 27 Nov 2026 12:00:00 GMT"
	e.hdr[hdrLength] = fmt.Sprint(len(der))
	e.hdr[hdrCacheControl] = "max-age=60"
	return e
}

// checkEntry fails unless got reads back what testEntry(key, n) holds.
func checkEntry(t testing.TB, got *entry, key []byte, n int) {
	t.Helper()
	want := testEntry(key, n)
	if got == nil || !bytes.Equal(got.der, want.der) || got.hdr != want.hdr || got.thisUpdate != want.thisUpdate {
		t.Fatalf("entry for %x: want generation %d intact", key, n)
	}
	if cap(got.der) != len(got.der) {
		t.Fatalf("der of %x can be appended to in place", key)
	}
}

// TestCacheArena: entries read back intact through replacements,
// renewals (which keep their bytes), evictions and the compactions they
// cause, and the arena holds at most about twice what is live.
func TestCacheArena(t *testing.T) {
	// One shard's worth of keys, with room to spare (no CLOCK evictions),
	// and entries of 1-3 KB so that what is given back soon exceeds what
	// is live by more than a chunk, while the entries that never change
	// keep their chunks from being dropped whole.
	c := newCache(400 * cacheShards)
	s := &c.shards[0]
	keys := sameShardKeys(c, 400)
	gen := make([]int, len(keys))
	entry := func(k []byte, n int) *entry {
		e := testEntry(k, n)
		e.der = append(e.der, bytes.Repeat([]byte{byte(n)}, 1000+(n*131+int(k[len(k)-1]))%1000)...)
		e.hdr[hdrLength] = fmt.Sprint(len(e.der))
		return e
	}
	check := func(k []byte, n int) {
		t.Helper()
		want, got := entry(k, n), c.get(k)
		if got == nil || !bytes.Equal(got.der, want.der) || got.hdr != want.hdr || cap(got.der) != len(got.der) {
			t.Fatalf("entry for %x: want generation %d intact", k, n)
		}
	}
	for _, k := range keys {
		c.add(k, entry(k, 0), c.generation(k))
	}
	for round := 1; round <= 16; round++ {
		for i, k := range keys {
			if i%8 == 0 {
				continue // long-lived entries that pin the chunks they are in
			}
			switch (i + round) % 4 {
			case 0, 2: // re-signed: new bytes
				gen[i] = round
				c.add(k, entry(k, round), c.generation(k))
			case 1: // renewed from a view: the same bytes
				v := c.get(k)
				if v == nil {
					continue
				}
				renewed := *v
				renewed.expires = instant(round)
				if !c.replace(k, v, &renewed) {
					t.Fatalf("replace of an unchanged entry refused")
				}
				if c.replace(k, v, &renewed) {
					t.Fatalf("replace of a replaced entry accepted")
				}
				if w := c.get(k); w == nil || unsafe.SliceData(w.der) != unsafe.SliceData(v.der) || w.expires != instant(round) {
					t.Fatalf("a renewal copied its bytes again, or was not stored")
				}
			case 3:
				if round%3 == 0 {
					c.evict(k)
					gen[i] = -1
				} else if gen[i] < 0 {
					gen[i] = round
					c.add(k, entry(k, round), c.generation(k))
				}
			}
		}
		for i, k := range keys {
			if gen[i] < 0 {
				if c.get(k) != nil {
					t.Fatalf("evicted %x still cached", k)
				}
				continue
			}
			check(k, gen[i])
		}
		live := 0
		for j := range s.recs {
			if r := &s.recs[j]; r.key[0] != 0 {
				live += r.size()
			}
		}
		if a := &s.arena; live != a.inUse || a.held > 2*a.inUse+2*maxChunk {
			t.Fatalf("round %d: %d bytes live; the arena counts %d and holds %d", round, live, a.inUse, a.held)
		}
	}
	if s.compactions == 0 {
		t.Fatal("the shard never compacted: the test does not exercise it")
	}
	t.Logf("%d compactions", s.compactions)
}

// TestCacheViewsStable: what get hands out stays as it was while writers
// replace, evict and compact underneath (run with -race).
func TestCacheViewsStable(t *testing.T) {
	c := newCache(512)
	keys := make([][]byte, 256)
	for i := range keys {
		keys[i] = cacheKey(nil, 1, HashSM3, big.NewInt(int64(i+1)))
		c.add(keys[i], testEntry(keys[i], 0), c.generation(keys[i]))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			k := keys[n%len(keys)]
			if n%5 == 0 {
				c.evict(k)
			}
			c.add(k, testEntry(k, n), c.generation(k))
		}
	})
	for i := range 2000 {
		k := keys[i%len(keys)]
		v := c.get(k)
		if v == nil {
			continue
		}
		n, err := strconv.Atoi(v.hdr[hdrETag][1 : len(v.hdr[hdrETag])-1])
		if err != nil {
			t.Fatalf("etag %q", v.hdr[hdrETag])
		}
		runtime.Gosched() // let the writer overwrite what it would
		checkEntry(t, v, k, n)
	}
	close(stop)
	wg.Wait()
}

// TestCacheHeapObjects: cached entries are not heap objects of their own,
// so that the collector's work does not grow with the cache.
func TestCacheHeapObjects(t *testing.T) {
	const n = 20000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = cacheKey(nil, 0, HashSHA1, big.NewInt(int64(i+1)))
	}
	entries := make([]*entry, n)
	for i, k := range keys {
		entries[i] = testEntry(k, 1)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newCache(2 * n)
	for i, k := range keys {
		c.add(k, entries[i], c.generation(k))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(entries)
	objs := int64(after.HeapObjects) - int64(before.HeapObjects)
	if c.len() != n {
		t.Fatalf("cached %d of %d", c.len(), n)
	}
	// Per shard: the map's tables, recs, a handful of chunks and the
	// chunk list; nothing per entry.
	if objs > 30*cacheShards {
		t.Errorf("%d entries cached as %d heap objects", n, objs)
	}
}

// TestNewEntryAllocations: an entry is two heap objects, itself and one
// block for the response and its header text (not a third, the caller's
// response buffer), and the headers read back what was formatted.
func TestNewEntryAllocations(t *testing.T) {
	r := &Responder{cfg: Config{CacheMaxAge: time.Minute, NegativeMaxAge: 10 * time.Second, VerifyMaxAge: 10 * time.Minute}}
	der := bytes.Repeat([]byte{0x30}, 1100)
	this := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	next := this.Add(24 * time.Hour)
	now := this.Add(time.Minute)
	if n := testing.AllocsPerRun(100, func() {
		r.newEntry(der, Good, -1, time.Time{}, this, next, now, time.Hour)
	}); n > 2 {
		t.Errorf("newEntry: %v allocations, want 2", n)
	}
	e := r.newEntry(der, Good, -1, time.Time{}, this, next, now, time.Hour)
	if !bytes.Equal(e.der, der) || cap(e.der) != len(der) {
		t.Errorf("der differs or can be appended to in place (cap %d)", cap(e.der))
	}
	// One block: the header text starts where der ends, so der is not
	// the caller's buffer, kept alive as an object of its own.
	if end, text := uintptr(unsafe.Pointer(unsafe.SliceData(e.der)))+uintptr(len(der)), uintptr(unsafe.Pointer(unsafe.StringData(e.hdr[hdrETag]))); end != text {
		t.Errorf("der and the header text are separate objects")
	}
	for i, want := range map[int]string{
		hdrLastModified: "Fri, 27 Nov 2026 12:00:00 GMT",
		hdrExpires:      "Sat, 28 Nov 2026 12:00:00 GMT",
		hdrLength:       "1100",
		hdrCacheControl: "max-age=3600, public, no-transform, must-revalidate",
	} {
		if got := e.header(i)[0]; got != want {
			t.Errorf("header %d = %q, want %q", i, got, want)
		}
	}
	if etag := e.etag(); len(etag) != 18 || etag[0] != '"' || etag[17] != '"' {
		t.Errorf("etag %q", etag)
	}
}

// TestCacheSizeMetrics: the cache's entries and arena bytes are exported.
func TestCacheSizeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCache(1000)
	newMetrics(reg, c)
	keys := sameShardKeys(c, 3)
	want := 0
	for _, k := range keys {
		e := testEntry(k, 1)
		c.add(k, e, c.generation(k))
		want += len(e.der)
		for _, h := range e.hdr {
			want += len(h)
		}
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if m := mf.GetMetric(); len(m) == 1 && m[0].GetGauge() != nil {
			got[mf.GetName()] = m[0].GetGauge().GetValue()
		}
	}
	if got["gmtrust_ocsp_cache_entries"] != 3 {
		t.Errorf("entries gauge %v, want 3", got["gmtrust_ocsp_cache_entries"])
	}
	// One chunk of the shard, which holds the three entries.
	if b := got["gmtrust_ocsp_cache_bytes"]; b != minChunk || c.shards[0].arena.inUse != want {
		t.Errorf("bytes gauge %v, want %d holding %d live (arena counts %d)", b, minChunk, want, c.shards[0].arena.inUse)
	}
}

package ocsp

import (
	"bytes"
	"math/big"
	"reflect"
	"testing"
	"time"
	"unsafe"
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
	// The ring and the map agree.
	n := 0
	for slot, k := range s.ring {
		if k[0] == 0 {
			continue
		}
		n++
		if e := s.m[k]; e == nil || e.slot != slot {
			t.Errorf("ring slot %d names %x, which the map does not place there", slot, k)
		}
	}
	if n != len(s.m) {
		t.Errorf("ring holds %d keys, map %d", n, len(s.m))
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
// nothing.
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
	if allocs != 0 {
		t.Errorf("%v allocations per hit", allocs)
	}
}

// TestEntryPointersFirst guards the layout that keeps cached entries cheap
// to mark: the collector scans an entry up to its last pointer, so every
// field after hdr must be pointer-free.
func TestEntryPointersFirst(t *testing.T) {
	typ := reflect.TypeFor[entry]()
	var hasPointers func(reflect.Type) bool
	hasPointers = func(t reflect.Type) bool {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.String, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
			return true
		case reflect.Array:
			return t.Len() > 0 && hasPointers(t.Elem())
		case reflect.Struct:
			for i := range t.NumField() {
				if hasPointers(t.Field(i).Type) {
					return true
				}
			}
		}
		return false
	}
	last := -1
	for i := range typ.NumField() {
		if hasPointers(typ.Field(i).Type) {
			last = i
		}
	}
	if f := typ.Field(last); f.Name != "hdr" {
		t.Errorf("last field with pointers is %s, want hdr (pointers first, then scalars)", f.Name)
	}
	if words := (typ.Field(last).Offset + typ.Field(last).Type.Size()) / 8; words > 13 {
		t.Errorf("pointer-bearing prefix is %d words, want at most 13", words)
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

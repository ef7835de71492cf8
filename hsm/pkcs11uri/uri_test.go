package pkcs11uri

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func uintp(v uint) *uint { return &v }

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want URI
		// canon is String() of the parsed URI; "" means it equals in.
		canon string
	}{
		{
			name: "brief example",
			in:   "pkcs11:token=gmtrust;object=issuing-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gmtrust/pin",
			want: URI{Token: "gmtrust", Object: "issuing-ca", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/etc/gmtrust/pin"},
		},
		{
			name: "key reference",
			in:   "pkcs11:token=gmtrust;object=ocsp;type=private?module-path=/m.so&pin-value=1234",
			want: URI{Token: "gmtrust", Object: "ocsp", Type: TypePrivate, ModulePath: "/m.so", PINValue: "1234"},
		},
		{
			name: "empty URI",
			in:   "pkcs11:",
			want: URI{},
		},
		{
			name:  "scheme is case-insensitive",
			in:    "PKCS11:token=a",
			want:  URI{Token: "a"},
			canon: "pkcs11:token=a",
		},
		{
			name: "percent-encoding of space, semicolon, percent and UTF-8",
			in:   "pkcs11:token=My%20token%3B%25;object=%E7%AD%BE%E7%AB%A0",
			want: URI{Token: "My token;%", Object: "签章"},
		},
		{
			name:  "lower-case hex decodes, formats upper-case",
			in:    "pkcs11:object=a%2fb",
			want:  URI{Object: "a/b"},
			canon: "pkcs11:object=a%2Fb",
		},
		{
			name: "binary id",
			in:   "pkcs11:id=%01%02%FE%FF",
			want: URI{ID: []byte{1, 2, 0xfe, 0xff}},
		},
		{
			name:  "id given with plain characters formats fully encoded",
			in:    "pkcs11:id=AB",
			want:  URI{ID: []byte("AB")},
			canon: "pkcs11:id=%41%42",
		},
		{
			name: "reserved characters that stay unencoded in path and query",
			in:   "pkcs11:token=:[]@!$'()*+,=&?module-path=:[]@!$'()*+,=/?|",
			want: URI{Token: ":[]@!$'()*+,=&", ModulePath: ":[]@!$'()*+,=/?|"},
		},
		{
			name:  "ampersand in query is encoded",
			in:    "pkcs11:?module-name=a%26b",
			want:  URI{ModuleName: "a&b"},
			canon: "pkcs11:?module-name=a%26b",
		},
		{
			name: "every standard attribute in canonical order",
			in: "pkcs11:token=t;manufacturer=m;serial=s;model=mo;library-manufacturer=lm;library-description=ld;" +
				"library-version=2.40;slot-manufacturer=sm;slot-description=sd;slot-id=0;object=o;id=%AA;type=data" +
				"?module-name=softhsm2&module-path=/x.so&pin-source=file:/p",
			want: URI{Token: "t", Manufacturer: "m", Serial: "s", Model: "mo", LibraryManufacturer: "lm",
				LibraryDescription: "ld", LibraryVersion: "2.40", SlotManufacturer: "sm", SlotDescription: "sd",
				SlotID: uintp(0), Object: "o", ID: []byte{0xaa}, Type: TypeData,
				ModuleName: "softhsm2", ModulePath: "/x.so", PINSource: "file:/p"},
		},
		{
			name:  "other order is accepted and canonicalised",
			in:    "pkcs11:type=cert;object=o;token=t?pin-value=1&module-path=/x.so",
			want:  URI{Token: "t", Object: "o", Type: TypeCert, ModulePath: "/x.so", PINValue: "1"},
			canon: "pkcs11:token=t;object=o;type=cert?module-path=/x.so&pin-value=1",
		},
		{
			name: "vendor attributes kept in order, vendor query may repeat",
			in:   "pkcs11:token=t;x-b=2;x-a=1?x-q=1&x-q=2",
			want: URI{Token: "t", VendorPath: []Attribute{{"x-b", "2"}, {"x-a", "1"}},
				VendorQuery: []Attribute{{"x-q", "1"}, {"x-q", "2"}}},
		},
		{
			name:  "empty values are absent",
			in:    "pkcs11:token=;object=o;slot-id=;type=",
			want:  URI{Object: "o"},
			canon: "pkcs11:object=o",
		},
		{
			name: "large slot id",
			in:   "pkcs11:slot-id=1919914746",
			want: URI{SlotID: uintp(1919914746)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(*u, tt.want) {
				t.Errorf("Parse(%q) =\n %+v\nwant\n %+v", tt.in, *u, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			s := u.String()
			if s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			// Round trip: the canonical form parses back to the same URI.
			u2, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(String()) %q: %v", s, err)
			}
			if !reflect.DeepEqual(u, u2) {
				t.Errorf("round trip changed the URI:\n %+v\n %+v", u, u2)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in, msg string
	}{
		{"", "does not start"},
		{"file:/etc/pin", "does not start"},
		{"pkcs11", "does not start"},
		{"pkcs11:token", "no '='"},
		{"pkcs11:token=a;token=b", "appears twice"},
		{"pkcs11:?module-path=/a&module-path=/b", "appears twice"},
		{"pkcs11:colour=red", "unknown path attribute"},
		{"pkcs11:x-=1", "unknown path attribute"},
		{"pkcs11:?pin=1", "unknown query attribute"},
		{"pkcs11:type=secret", "type"},
		{"pkcs11:slot-id=-1", "slot-id"},
		{"pkcs11:slot-id=+1", "slot-id"},
		{"pkcs11:slot-id=99999999999999999999999", "slot-id"},
		{"pkcs11:library-version=1.", "library-version"},
		{"pkcs11:library-version=a", "library-version"},
		{"pkcs11:token=a%2", "truncated"},
		{"pkcs11:token=a%zz", "invalid percent-encoding"},
		{"pkcs11:token=my key", "must be percent-encoded"},
		{"pkcs11:token=a/b", "must be percent-encoded"},
		{"pkcs11:token=a%20b/c", "must be percent-encoded"},
		{"pkcs11:?module-path=a;b", "must be percent-encoded"},
		{"pkcs11:?pin-source=file:/p&pin-value=1", "mutually exclusive"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error", tt.in, u)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestFormatRoundTrip builds URIs from awkward values and checks that
// String and Parse invert each other.
func TestFormatRoundTrip(t *testing.T) {
	values := []string{"a", "with space", "semi;colon", "amp&ersand", "q?mark", "slash/", "pct%", "\x00\xff", "签章", "=;&?#"}
	for _, v := range values {
		u := &URI{Token: v, Object: v, Serial: v, ModulePath: v, PINSource: v, ID: []byte(v),
			VendorPath: []Attribute{{"x-v", v}}, VendorQuery: []Attribute{{"x-v", v}}}
		s := u.String()
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("value %q: Parse(%q): %v", v, s, err)
		}
		if !reflect.DeepEqual(u, got) {
			t.Errorf("value %q: round trip via %q gave %+v", v, s, got)
		}
	}
}

func TestClone(t *testing.T) {
	u, err := Parse("pkcs11:token=t;slot-id=3;id=%01;x-a=b?x-c=d")
	if err != nil {
		t.Fatal(err)
	}
	c := u.Clone()
	*c.SlotID = 4
	c.ID[0] = 2
	c.VendorPath[0].Value = "z"
	c.VendorQuery[0].Value = "z"
	if *u.SlotID != 3 || u.ID[0] != 1 || u.VendorPath[0].Value != "b" || u.VendorQuery[0].Value != "d" {
		t.Errorf("Clone shares memory with the original: %+v", u)
	}
}

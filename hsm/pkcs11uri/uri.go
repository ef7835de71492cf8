// Package pkcs11uri parses and formats PKCS #11 URIs (RFC 7512), the
// strings gmtrust uses to name tokens and keys, for example
//
//	pkcs11:token=gmtrust;object=issuing-ca;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gmtrust/pin
//
// Parse is strict: an unknown standard attribute, a repeated attribute, a
// malformed percent-encoding or a character that RFC 7512 requires to be
// percent-encoded is an error, because a key reference that is silently
// read differently from what its author meant could select another key.
// Vendor attributes (names starting with "x-") are kept in order so that
// they survive a round trip.
package pkcs11uri

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scheme is the URI scheme, without the colon.
const Scheme = "pkcs11"

// ObjectType is the value of the "type" path attribute (CKA_CLASS).
type ObjectType string

// Object types defined by RFC 7512.
const (
	TypePublic    ObjectType = "public"
	TypePrivate   ObjectType = "private"
	TypeCert      ObjectType = "cert"
	TypeSecretKey ObjectType = "secret-key"
	TypeData      ObjectType = "data"
)

// Attribute is a vendor-specific ("x-" prefixed) attribute.
type Attribute struct {
	Name  string
	Value string
}

// URI is a parsed PKCS #11 URI. An empty field means the attribute is
// absent; an attribute given with an empty value ("token=") is treated the
// same way.
type URI struct {
	// Path attributes identifying the token.
	Token        string // token label (CK_TOKEN_INFO.label)
	Manufacturer string // token manufacturer ID
	Serial       string // token serial number
	Model        string // token model

	// Path attributes identifying the library.
	LibraryManufacturer string
	LibraryDescription  string
	LibraryVersion      string // "M" or "M.N"

	// Path attributes identifying the slot.
	SlotManufacturer string
	SlotDescription  string
	SlotID           *uint // nil when absent; slot 0 is valid

	// Path attributes identifying the object.
	Object string     // CKA_LABEL
	ID     []byte     // CKA_ID
	Type   ObjectType // CKA_CLASS

	// Query attributes.
	PINSource  string // a URI (usually file:...) to read the PIN from
	PINValue   string // the PIN itself
	ModuleName string
	ModulePath string

	// Vendor-specific attributes, in order of appearance.
	VendorPath  []Attribute
	VendorQuery []Attribute
}

// ErrSyntax is returned (wrapped) for every malformed URI.
var ErrSyntax = errors.New("pkcs11uri: invalid PKCS #11 URI")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// Characters allowed unencoded in values, besides RFC 3986 "unreserved":
// pk11-path-res-avail and pk11-query-res-avail of RFC 7512 section 2.3.
const (
	resAvail      = ":[]@!$'()*+,="
	pathResAvail  = resAvail + "&"
	queryResAvail = resAvail + "/?|"
)

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// Parse parses a PKCS #11 URI.
func Parse(s string) (*URI, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return nil, syntaxErr("%q does not start with %q", truncate(s), Scheme+":")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := new(URI)
	seen := make(map[string]bool)
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok {
				return nil, syntaxErr("path attribute %q has no '='", attr)
			}
			if seen[name] {
				return nil, syntaxErr("path attribute %q appears twice", name)
			}
			seen[name] = true
			val, err := unescape(raw, pathResAvail)
			if err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %v", ErrSyntax, name, err)
			}
			if err := u.setPath(name, val); err != nil {
				return nil, err
			}
		}
	}
	if query != "" {
		seenQ := make(map[string]bool)
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok {
				return nil, syntaxErr("query attribute %q has no '='", attr)
			}
			// RFC 7512 lets vendor query attributes repeat; the standard
			// ones have one meaning each, so a repeat is an error.
			if !isVendor(name) && seenQ[name] {
				return nil, syntaxErr("query attribute %q appears twice", name)
			}
			seenQ[name] = true
			val, err := unescape(raw, queryResAvail)
			if err != nil {
				return nil, fmt.Errorf("%w: attribute %q: %v", ErrSyntax, name, err)
			}
			if err := u.setQuery(name, val); err != nil {
				return nil, err
			}
		}
	}
	if u.PINSource != "" && u.PINValue != "" {
		return nil, syntaxErr("pin-source and pin-value are mutually exclusive")
	}
	return u, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func isVendor(name string) bool {
	if !strings.HasPrefix(name, "x-") || len(name) == 2 {
		return false
	}
	for i := 2; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (u *URI) setPath(name, val string) error {
	switch name {
	case "token":
		u.Token = val
	case "manufacturer":
		u.Manufacturer = val
	case "serial":
		u.Serial = val
	case "model":
		u.Model = val
	case "library-manufacturer":
		u.LibraryManufacturer = val
	case "library-description":
		u.LibraryDescription = val
	case "library-version":
		if val != "" && !validVersion(val) {
			return syntaxErr("library-version %q is not M or M.N", val)
		}
		u.LibraryVersion = val
	case "slot-manufacturer":
		u.SlotManufacturer = val
	case "slot-description":
		u.SlotDescription = val
	case "slot-id":
		if val == "" {
			return nil
		}
		n, err := strconv.ParseUint(val, 10, strconv.IntSize)
		if err != nil || val[0] == '+' {
			return syntaxErr("slot-id %q is not a decimal number", val)
		}
		id := uint(n)
		u.SlotID = &id
	case "object":
		u.Object = val
	case "id":
		if val != "" {
			u.ID = []byte(val)
		}
	case "type":
		switch t := ObjectType(val); t {
		case "", TypePublic, TypePrivate, TypeCert, TypeSecretKey, TypeData:
			u.Type = t
		default:
			return syntaxErr("type %q is not one of public, private, cert, secret-key, data", val)
		}
	default:
		if !isVendor(name) {
			return syntaxErr("unknown path attribute %q", name)
		}
		if val == "" {
			return nil
		}
		u.VendorPath = append(u.VendorPath, Attribute{Name: name, Value: val})
	}
	return nil
}

func (u *URI) setQuery(name, val string) error {
	switch name {
	case "pin-source":
		u.PINSource = val
	case "pin-value":
		u.PINValue = val
	case "module-name":
		u.ModuleName = val
	case "module-path":
		u.ModulePath = val
	default:
		if !isVendor(name) {
			return syntaxErr("unknown query attribute %q", name)
		}
		if val == "" {
			return nil
		}
		u.VendorQuery = append(u.VendorQuery, Attribute{Name: name, Value: val})
	}
	return nil
}

func validVersion(v string) bool {
	major, minor, hasMinor := strings.Cut(v, ".")
	return allDigits(major) && (!hasMinor || allDigits(minor))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// unescape decodes percent-encoding and rejects characters that must have
// been encoded.
func unescape(s, extra string) (string, error) {
	if !strings.ContainsRune(s, '%') {
		for i := 0; i < len(s); i++ {
			if !isUnreserved(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
				return "", fmt.Errorf("character %q at offset %d must be percent-encoded", s[i], i)
			}
		}
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("truncated percent-encoding at offset %d", i)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("invalid percent-encoding %q at offset %d", s[i:i+3], i)
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		case isUnreserved(c) || strings.IndexByte(extra, c) >= 0:
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("character %q at offset %d must be percent-encoded", c, i)
		}
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const upperhex = "0123456789ABCDEF"

func escape(b *strings.Builder, s, extra string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || strings.IndexByte(extra, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperhex[c>>4])
		b.WriteByte(upperhex[c&15])
	}
}

// String formats u in a canonical attribute order. Values are
// percent-encoded where RFC 7512 requires it; id is always fully encoded,
// as the RFC recommends for binary values.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString(Scheme)
	b.WriteByte(':')
	first := true
	path := func(name, val string) {
		if val == "" {
			return
		}
		if !first {
			b.WriteByte(';')
		}
		first = false
		b.WriteString(name)
		b.WriteByte('=')
		escape(&b, val, pathResAvail)
	}
	path("token", u.Token)
	path("manufacturer", u.Manufacturer)
	path("serial", u.Serial)
	path("model", u.Model)
	path("library-manufacturer", u.LibraryManufacturer)
	path("library-description", u.LibraryDescription)
	path("library-version", u.LibraryVersion)
	path("slot-manufacturer", u.SlotManufacturer)
	path("slot-description", u.SlotDescription)
	if u.SlotID != nil {
		path("slot-id", strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	path("object", u.Object)
	if len(u.ID) > 0 {
		if !first {
			b.WriteByte(';')
		}
		first = false
		b.WriteString("id=")
		for _, c := range u.ID {
			b.WriteByte('%')
			b.WriteByte(upperhex[c>>4])
			b.WriteByte(upperhex[c&15])
		}
	}
	path("type", string(u.Type))
	for _, a := range u.VendorPath {
		path(a.Name, a.Value)
	}

	firstQ := true
	query := func(name, val string) {
		if val == "" {
			return
		}
		if firstQ {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		firstQ = false
		b.WriteString(name)
		b.WriteByte('=')
		escape(&b, val, queryResAvail)
	}
	query("module-name", u.ModuleName)
	query("module-path", u.ModulePath)
	query("pin-source", u.PINSource)
	query("pin-value", u.PINValue)
	for _, a := range u.VendorQuery {
		query(a.Name, a.Value)
	}
	return b.String()
}

// Clone returns a deep copy of u.
func (u *URI) Clone() *URI {
	c := *u
	if u.SlotID != nil {
		id := *u.SlotID
		c.SlotID = &id
	}
	c.ID = append([]byte(nil), u.ID...)
	c.VendorPath = append([]Attribute(nil), u.VendorPath...)
	c.VendorQuery = append([]Attribute(nil), u.VendorQuery...)
	return &c
}

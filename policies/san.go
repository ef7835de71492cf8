package policies

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/idna"
)

// errWildcard marks DNS name errors that are about a wildcard, so that
// they are reported under RuleWildcard.
var errWildcard = errors.New("wildcard")

// checkSANs validates the subject alternative names, then the CN against
// them when the profile asks for it.
func (c *compiled) checkSANs(p *Profile, req Request, cns []string) *Violation {
	present := []struct {
		typ string
		n   int
	}{
		{SANDNS, len(req.DNSNames)},
		{SANIP, len(req.IPAddresses)},
		{SANEmail, len(req.EmailAddresses)},
		{SANURI, len(req.URIs)},
	}
	total := 0
	for _, t := range present {
		if t.n > 0 && !c.sans[t.typ] {
			return violation(RuleSANType, "%s SANs are not allowed by this profile", t.typ)
		}
		total += t.n
	}
	if p.SANs.Required && total == 0 {
		return violation(RuleSANRequired, "at least one subject alternative name (%s) is required", strings.Join(p.SANs.Allowed, ", "))
	}
	if p.SANs.MaxCount > 0 && total > p.SANs.MaxCount {
		return violation(RuleSANCount, "%d subject alternative names, at most %d allowed", total, p.SANs.MaxCount)
	}
	for _, name := range req.DNSNames {
		if err := checkDNSName(name, p.SANs.AllowWildcard); err != nil {
			rule := RuleSANValue
			if errors.Is(err, errWildcard) {
				rule = RuleWildcard
			}
			return violation(rule, "DNS name %q: %v", name, err)
		}
	}
	for _, ip := range req.IPAddresses {
		if err := checkIP(ip); err != nil {
			return violation(RuleSANValue, "IP address %v: %v", ip, err)
		}
	}
	for _, e := range req.EmailAddresses {
		if err := checkEmail(e); err != nil {
			return violation(RuleSANValue, "email address %q: %v", e, err)
		}
	}
	for _, u := range req.URIs {
		if err := checkURI(u); err != nil {
			return violation(RuleSANValue, "URI %v: %v", u, err)
		}
	}
	if p.Subject.CommonNameInSANs {
		for _, cn := range cns {
			if !cnInSANs(cn, req) {
				return violation(RuleCommonName, "CN %q is not one of the DNS names or IP addresses", cn)
			}
		}
	}
	return nil
}

func cnInSANs(cn string, req Request) bool {
	if ip := net.ParseIP(cn); ip != nil {
		return slices.ContainsFunc(req.IPAddresses, ip.Equal)
	}
	return slices.ContainsFunc(req.DNSNames, func(d string) bool { return strings.EqualFold(d, cn) })
}

// checkDNSName validates a dNSName SAN (RFC 5280 4.2.1.6 preferred name
// syntax, RFC 5890 A-labels). Names are compared lower-cased, so upper
// case is accepted.
func checkDNSName(name string, allowWildcard bool) error {
	if name == "" {
		return errors.New("empty")
	}
	if !isASCII(name) {
		return errors.New("non-ASCII characters; use the A-label (xn--) form")
	}
	if strings.HasSuffix(name, ".") {
		return errors.New("trailing dot")
	}
	if len(name) > 253 {
		return fmt.Errorf("%d characters, at most 253 allowed", len(name))
	}
	labels := strings.Split(strings.ToLower(name), ".")
	if labels[0] == "*" {
		if !allowWildcard {
			return fmt.Errorf("%w not allowed here", errWildcard)
		}
		// "*.cn" or "*.com" would cover a whole top-level domain.
		if len(labels) < 3 {
			return fmt.Errorf("%w must be followed by at least two labels", errWildcard)
		}
		labels = labels[1:]
	}
	for _, l := range labels {
		if strings.Contains(l, "*") {
			return fmt.Errorf("%w may only be the whole left-most label", errWildcard)
		}
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	// A numeric top-level label means the name is an IP address (or no
	// name at all); IP addresses belong in iPAddress SANs.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("numeric top-level label; use an IP address SAN")
	}
	return nil
}

// checkLabel validates one lower-case LDH label, including A-labels.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q longer than 63 characters", l)
	}
	for i := 0; i < len(l); i++ {
		b := l[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
			return fmt.Errorf("label %q contains %q; only letters, digits and hyphens are allowed", l, b)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	// RFC 5890 2.3.1: "??--" labels are reserved; only xn-- (IDNA) is
	// defined, and it must be a valid A-label. idna's Lookup profile
	// decodes it and validates the U-label it yields, which refuses
	// non-canonical encodings (mapped, unnormalised or all-ASCII labels).
	if len(l) >= 4 && l[2:4] == "--" {
		if !strings.HasPrefix(l, "xn--") {
			return fmt.Errorf("label %q has hyphens in positions 3 and 4 but is not an A-label", l)
		}
		if _, err := idna.Lookup.ToUnicode(l); err != nil {
			return fmt.Errorf("label %q is not a valid A-label: %v", l, err)
		}
	}
	return nil
}

func checkIP(ip net.IP) error {
	if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
		return fmt.Errorf("invalid length %d", len(ip))
	}
	if ip.IsUnspecified() {
		return errors.New("unspecified address")
	}
	return nil
}

// checkEmail validates an rfc822Name: an ASCII mailbox local@domain with
// a dot-atom local part (RFC 5321 4.1.2). Quoted local parts and address
// literals are refused; internationalised addresses need the RFC 8398
// SmtpUTF8Mailbox otherName, which gmtrust does not issue.
func checkEmail(e string) error {
	if e == "" {
		return errors.New("empty")
	}
	if !isASCII(e) {
		return errors.New("non-ASCII characters")
	}
	if len(e) > 254 {
		return fmt.Errorf("%d characters, at most 254 allowed", len(e))
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || strings.Contains(domain, "@") {
		return errors.New("must contain exactly one @")
	}
	if local == "" || len(local) > 64 {
		return errors.New("local part must be 1-64 characters")
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return errors.New("local part has a leading, trailing or double dot")
		}
		for i := 0; i < len(atom); i++ {
			if !isAtext(atom[i]) {
				return fmt.Errorf("local part contains %q", atom[i])
			}
		}
	}
	if err := checkDNSName(domain, false); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	return nil
}

// isAtext reports RFC 5322 atext characters.
func isAtext(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", b) >= 0
}

// checkURI validates a uniformResourceIdentifier SAN. RFC 5280 4.2.1.6
// requires a scheme and a scheme-specific part; gmtrust further requires
// an authority whose host is a valid DNS name or IP address, since that
// is what relying parties match URIs on.
func checkURI(u *url.URL) error {
	if u == nil {
		return errors.New("nil URI")
	}
	if u.Scheme == "" {
		return errors.New("not absolute: scheme missing")
	}
	if u.Opaque != "" || u.Host == "" {
		return errors.New("host missing")
	}
	if u.User != nil {
		return errors.New("must not contain user information")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("host missing")
	}
	if ip := net.ParseIP(host); ip != nil {
		return checkIP(ip)
	}
	if err := checkDNSName(host, false); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

package policies

import (
	"bytes"
	_ "embed" // the shipped authorization policy
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// authzYAML is the authorization policy shipped with gmtrust.
//
//go:embed authz.yaml
var authzYAML []byte

// Scope says which objects a permission covers.
type Scope string

// Scopes, from the widest to the narrowest.
const (
	// ScopeAny covers every object.
	ScopeAny Scope = "any"
	// ScopeDepartment covers objects of the principal's department.
	ScopeDepartment Scope = "department"
	// ScopeGranted covers objects that list the principal as a grantee.
	ScopeGranted Scope = "granted"
	// ScopeOwn covers objects the principal made.
	ScopeOwn Scope = "own"
)

// width orders scopes: a decision reports the widest scope that allows.
func (s Scope) width() int {
	switch s {
	case ScopeAny:
		return 4
	case ScopeDepartment:
		return 3
	case ScopeGranted:
		return 2
	case ScopeOwn:
		return 1
	}
	return 0
}

// Principal is an authenticated caller as the decision function sees it.
type Principal struct {
	Name       string
	Department string
	Roles      []string
}

// Resource is the object of an action. The zero Resource (empty ID) asks
// about the action itself, before an object is known: the route-level
// check and collection listings. Set ID (any non-empty name, e.g.
// "certificate/issuing/3f2a") for a specific object; the scope of each
// permission is then checked against the other fields.
type Resource struct {
	ID         string
	Department string   // the department the object belongs to
	Owner      string   // the principal that made it
	Grantees   []string // principals granted its use
	Profile    string   // certificate profile, for certificate.issue
}

// AccessDecision is the answer of Authz.Decide.
type AccessDecision struct {
	Allowed bool
	// Scope is the widest scope among the permissions that allow. For a
	// zero Resource anything but ScopeAny obliges the caller to check the
	// object (Decide again with it) or to filter a listing to what the
	// scope covers.
	Scope Scope
	// Rule names what decided: "public", "role ra-officer: certificate.revoke
	// (department)", or why nothing allowed.
	Rule string
}

// Authz is a loaded authorization policy: roles and their permissions,
// the known actions and the public ones. It is immutable and safe for
// concurrent use.
type Authz struct {
	actions map[string]string // action -> description
	public  map[string]bool
	roles   map[string]*role
}

type role struct {
	name        string
	description string
	perms       []permission
}

type permission struct {
	action   string // an action, or "*"
	except   map[string]bool
	scope    Scope
	profiles []string // nil: any profile
}

func (p *permission) matches(action string) bool {
	if p.except[action] {
		return false
	}
	return p.action == "*" || p.action == action
}

func (p *permission) String() string {
	return fmt.Sprintf("%s (%s)", p.action, p.scope)
}

// authzFile is the YAML layout of authz.yaml.
type authzFile struct {
	Actions map[string]string   `yaml:"actions"`
	Public  []string            `yaml:"public"`
	Roles   map[string]roleFile `yaml:"roles"`
}

type roleFile struct {
	Description string           `yaml:"description"`
	Permissions []permissionFile `yaml:"permissions"`
}

type permissionFile struct {
	Action   string   `yaml:"action"`
	Scope    Scope    `yaml:"scope"`
	Except   []string `yaml:"except"`
	Profiles []string `yaml:"profiles"`
}

var (
	// ErrAuthz wraps every error about an invalid authorization policy.
	ErrAuthz = errors.New("policies: invalid authorization policy")

	actionRe = regexp.MustCompile(`^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$`)
	roleRe   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
)

// DefaultAuthz returns the policy shipped in policies/authz.yaml.
func DefaultAuthz() (*Authz, error) {
	return LoadAuthz(bytes.NewReader(authzYAML))
}

// LoadAuthzFile reads a policy from a file.
func LoadAuthzFile(path string) (*Authz, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer f.Close()
	a, err := LoadAuthz(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// LoadAuthz parses and validates a policy. Unknown fields, unknown
// actions in permissions, unknown scopes and malformed names are errors,
// so that a typo cannot silently widen or narrow access.
func LoadAuthz(r io.Reader) (*Authz, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policies: read authorization policy: %w", err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrAuthz, maxFileSize)
	}
	var f authzFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuthz, err)
	}
	a := &Authz{actions: map[string]string{}, public: map[string]bool{}, roles: map[string]*role{}}
	if len(f.Actions) == 0 {
		return nil, fmt.Errorf("%w: no actions", ErrAuthz)
	}
	for name, desc := range f.Actions {
		if !actionRe.MatchString(name) {
			return nil, fmt.Errorf("%w: action %q: want dotted lower-case words such as certificate.issue", ErrAuthz, name)
		}
		a.actions[name] = desc
	}
	for _, name := range f.Public {
		if _, ok := a.actions[name]; !ok {
			return nil, fmt.Errorf("%w: public action %q is not declared under actions", ErrAuthz, name)
		}
		a.public[name] = true
	}
	if len(f.Roles) == 0 {
		return nil, fmt.Errorf("%w: no roles", ErrAuthz)
	}
	for name, rf := range f.Roles {
		if !roleRe.MatchString(name) {
			return nil, fmt.Errorf("%w: role %q: want lower-case letters, digits and '-'", ErrAuthz, name)
		}
		ro := &role{name: name, description: rf.Description}
		for i, pf := range rf.Permissions {
			p, err := a.permission(pf)
			if err != nil {
				return nil, fmt.Errorf("%w: role %s, permission %d: %v", ErrAuthz, name, i+1, err)
			}
			ro.perms = append(ro.perms, p)
		}
		if len(ro.perms) == 0 {
			return nil, fmt.Errorf("%w: role %s has no permissions", ErrAuthz, name)
		}
		a.roles[name] = ro
	}
	return a, nil
}

func (a *Authz) permission(pf permissionFile) (permission, error) {
	p := permission{action: pf.Action, scope: pf.Scope, profiles: pf.Profiles}
	if p.scope == "" {
		p.scope = ScopeAny
	}
	if p.scope.width() == 0 {
		return p, fmt.Errorf("scope %q: want any, department, granted or own", pf.Scope)
	}
	if p.action != "*" {
		if _, ok := a.actions[p.action]; !ok {
			return p, fmt.Errorf("action %q is not declared under actions", p.action)
		}
		if len(pf.Except) > 0 {
			return p, errors.New("except goes only with action \"*\"")
		}
	}
	if len(pf.Except) > 0 {
		p.except = map[string]bool{}
		for _, e := range pf.Except {
			if _, ok := a.actions[e]; !ok {
				return p, fmt.Errorf("except: action %q is not declared under actions", e)
			}
			p.except[e] = true
		}
	}
	if pf.Profiles != nil && len(pf.Profiles) == 0 {
		return p, errors.New("profiles: an empty list would allow nothing; leave it out to allow every profile")
	}
	return p, nil
}

// Actions returns every declared action, sorted.
func (a *Authz) Actions() []string {
	out := make([]string, 0, len(a.actions))
	for n := range a.actions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Known reports whether action is declared.
func (a *Authz) Known(action string) bool {
	_, ok := a.actions[action]
	return ok
}

// Public reports whether action needs no credentials.
func (a *Authz) Public(action string) bool { return a.public[action] }

// Roles returns the role names, sorted.
func (a *Authz) Roles() []string {
	out := make([]string, 0, len(a.roles))
	for n := range a.roles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasRole reports whether the policy defines role.
func (a *Authz) HasRole(name string) bool {
	_, ok := a.roles[name]
	return ok
}

// CheckRoles returns an error naming the first role the policy does not
// define, for validating what an administrator assigns.
func (a *Authz) CheckRoles(roles []string) error {
	for _, r := range roles {
		if !a.HasRole(r) {
			return fmt.Errorf("unknown role %q (known: %s)", r, strings.Join(a.Roles(), ", "))
		}
	}
	return nil
}

// Decide says whether p may perform action on res. It is the only place
// where roles are turned into access: the API middleware calls it with
// the zero Resource for every request, and handlers call it again with
// the object once they have loaded it.
//
// Unknown actions are refused; public ones are allowed to anybody; for
// the rest, p needs a name and a role with a permission for the action
// whose scope covers res (for the zero Resource, any permission for the
// action does, and AccessDecision.Scope says what remains to be checked).
func (a *Authz) Decide(p Principal, action string, res Resource) AccessDecision {
	if _, ok := a.actions[action]; !ok {
		return AccessDecision{Rule: fmt.Sprintf("unknown action %q", action)}
	}
	if a.public[action] {
		return AccessDecision{Allowed: true, Scope: ScopeAny, Rule: "public"}
	}
	if p.Name == "" {
		return AccessDecision{Rule: "not authenticated"}
	}
	best := AccessDecision{Rule: fmt.Sprintf("no role of %s allows %s", p.Name, action)}
	for _, rn := range p.Roles {
		ro, ok := a.roles[rn]
		if !ok {
			continue // a role removed from the policy grants nothing
		}
		for i := range ro.perms {
			perm := &ro.perms[i]
			if !perm.matches(action) || !covers(perm, p, res) {
				continue
			}
			if !best.Allowed || perm.scope.width() > best.Scope.width() {
				best = AccessDecision{Allowed: true, Scope: perm.scope, Rule: fmt.Sprintf("role %s: %s", rn, perm)}
			}
		}
	}
	if !best.Allowed && res.ID != "" {
		best.Rule = fmt.Sprintf("no role of %s allows %s on %s", p.Name, action, res.ID)
	}
	return best
}

// covers reports whether perm's scope and profile list cover res for p.
func covers(perm *permission, p Principal, res Resource) bool {
	if res.ID == "" {
		return true // route level: the object is checked later
	}
	if perm.profiles != nil && !slices.Contains(perm.profiles, res.Profile) {
		return false
	}
	switch perm.scope {
	case ScopeAny:
		return true
	case ScopeDepartment:
		return p.Department != "" && res.Department == p.Department
	case ScopeGranted:
		return slices.Contains(res.Grantees, p.Name)
	case ScopeOwn:
		return res.Owner != "" && res.Owner == p.Name
	}
	return false
}

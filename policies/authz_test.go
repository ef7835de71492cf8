package policies

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func defaultAuthz(t *testing.T) *Authz {
	t.Helper()
	a, err := DefaultAuthz()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDefaultAuthzRoles(t *testing.T) {
	a := defaultAuthz(t)
	// The roles issue #6 names must all exist.
	for _, r := range []string{"admin", "ra-officer", "seal-admin", "approval-system", "auditor"} {
		if !a.HasRole(r) {
			t.Errorf("role %s missing (have %v)", r, a.Roles())
		}
	}
	if err := a.CheckRoles([]string{"auditor", "root"}); err == nil || !strings.Contains(err.Error(), `"root"`) {
		t.Errorf("CheckRoles accepted an unknown role: %v", err)
	}
}

func TestDecide(t *testing.T) {
	a := defaultAuthz(t)
	admin := Principal{Name: "admin", Roles: []string{"admin"}}
	ra := Principal{Name: "czt-ra", Department: "czt", Roles: []string{"ra-officer"}}
	raNoDept := Principal{Name: "ra2", Roles: []string{"ra-officer"}}
	sealAdmin := Principal{Name: "czt-seals", Department: "czt", Roles: []string{"seal-admin"}}
	approvals := Principal{Name: "oa", Department: "czt", Roles: []string{"approval-system"}}
	auditor := Principal{Name: "aud", Roles: []string{"auditor"}}
	anon := Principal{}
	both := Principal{Name: "both", Department: "czt", Roles: []string{"ra-officer", "auditor"}}
	ghost := Principal{Name: "ghost", Roles: []string{"superuser"}}

	cert := func(dept, profile string) Resource {
		return Resource{ID: "certificate/issuing/1", Department: dept, Profile: profile}
	}
	sealRes := func(dept string, grantees ...string) Resource {
		return Resource{ID: "seal/s1", Department: dept, Grantees: grantees}
	}
	tests := []struct {
		name   string
		p      Principal
		action string
		res    Resource
		allow  bool
		scope  Scope
	}{
		{"public to anybody", anon, "crl.read", Resource{}, true, ScopeAny},
		{"public to admin", admin, "signature.verify", Resource{}, true, ScopeAny},
		{"anonymous", anon, "certificate.list", Resource{}, false, ""},
		{"unknown action, even for admin", admin, "ca.delete", Resource{}, false, ""},
		{"unknown role grants nothing", ghost, "certificate.list", Resource{}, false, ""},

		{"admin anything", admin, "principal.create", Resource{}, true, ScopeAny},
		{"admin any department", admin, "certificate.revoke", cert("gat", ""), true, ScopeAny},
		{"admin issues signer profiles", admin, "certificate.issue", cert("", "ocsp-signer"), true, ScopeAny},
		{"admin stamps only when granted", admin, "seal.stamp", sealRes("czt"), false, ""},
		{"admin stamps when granted", admin, "seal.stamp", sealRes("czt", "admin"), true, ScopeGranted},

		{"ra route level", ra, "certificate.revoke", Resource{}, true, ScopeDepartment},
		{"ra own department", ra, "certificate.revoke", cert("czt", ""), true, ScopeDepartment},
		{"ra other department", ra, "certificate.revoke", cert("gat", ""), false, ""},
		{"ra no department on object", ra, "certificate.read", cert("", ""), false, ""},
		{"ra without department", raNoDept, "certificate.read", cert("", ""), false, ""},
		{"ra issues staff-sign", ra, "certificate.issue", cert("czt", "staff-sign"), true, ScopeDepartment},
		{"ra may not issue OCSP signers", ra, "certificate.issue", cert("czt", "ocsp-signer"), false, ""},
		{"ra may not issue audit signers", ra, "certificate.issue", cert("czt", "audit-signer"), false, ""},
		{"ra no seals", ra, "seal.create", Resource{}, false, ""},
		{"ra no principals", ra, "principal.list", Resource{}, false, ""},
		{"ra no audit log", ra, "audit.read", Resource{}, false, ""},

		{"seal admin own department", sealAdmin, "seal.suspend", sealRes("czt"), true, ScopeDepartment},
		{"seal admin other department", sealAdmin, "seal.revoke", sealRes("gat"), false, ""},
		{"seal admin grants", sealAdmin, "seal.grant", sealRes("czt"), true, ScopeDepartment},
		{"seal admin does not stamp", sealAdmin, "seal.stamp", sealRes("czt"), false, ""},
		{"seal admin no certificates", sealAdmin, "certificate.issue", Resource{}, false, ""},

		{"approval system stamps granted seal", approvals, "seal.stamp", sealRes("gat", "x", "oa"), true, ScopeGranted},
		{"approval system, seal not granted", approvals, "seal.stamp", sealRes("czt", "x"), false, ""},
		{"approval system reads granted seal", approvals, "seal.read", sealRes("gat", "oa"), true, ScopeGranted},
		{"approval system own stamps", approvals, "stamp.list", Resource{}, true, ScopeOwn},
		{"approval system own stamp object", approvals, "stamp.list", Resource{ID: "stamp/1", Owner: "oa"}, true, ScopeOwn},
		{"approval system other's stamp", approvals, "stamp.list", Resource{ID: "stamp/1", Owner: "x"}, false, ""},
		{"approval system no seal admin", approvals, "seal.suspend", sealRes("czt", "oa"), false, ""},

		{"auditor reads", auditor, "certificate.read", cert("gat", ""), true, ScopeAny},
		{"auditor audit log", auditor, "audit.read", Resource{}, true, ScopeAny},
		{"auditor does not revoke", auditor, "certificate.revoke", cert("gat", ""), false, ""},
		{"auditor does not create tokens", auditor, "token.create", Resource{}, false, ""},
		{"auditor does not checkpoint", auditor, "audit.checkpoint", Resource{}, false, ""},

		{"widest scope wins", both, "certificate.list", Resource{}, true, ScopeAny},
		{"second role covers other department", both, "certificate.read", cert("gat", ""), true, ScopeAny},
		{"second role does not add writes", both, "certificate.revoke", cert("gat", ""), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Decide(tt.p, tt.action, tt.res)
			if d.Allowed != tt.allow || (tt.allow && d.Scope != tt.scope) {
				t.Fatalf("Decide = %+v, want allowed=%v scope=%q", d, tt.allow, tt.scope)
			}
			if d.Rule == "" {
				t.Fatal("decision without a rule")
			}
		})
	}
}

// TestAdminCoversEveryAction derives from the policy itself: every
// declared action is allowed to an administrator, seal.stamp with a grant.
func TestAdminCoversEveryAction(t *testing.T) {
	a := defaultAuthz(t)
	admin := Principal{Name: "admin", Roles: []string{"admin"}}
	for _, act := range a.Actions() {
		res := Resource{ID: "x/1", Department: "any", Grantees: []string{"admin"}}
		if d := a.Decide(admin, act, res); !d.Allowed {
			t.Errorf("admin may not %s: %s", act, d.Rule)
		}
	}
}

// TestAuditorReadOnly: no permission of the auditor role may change
// anything; reads are the actions named *.list, *.read or metrics.
func TestAuditorReadOnly(t *testing.T) {
	a := defaultAuthz(t)
	aud := Principal{Name: "aud", Roles: []string{"auditor"}}
	for _, act := range a.Actions() {
		d := a.Decide(aud, act, Resource{})
		read := strings.HasSuffix(act, ".list") || strings.HasSuffix(act, ".read") || a.Public(act)
		if d.Allowed && !read {
			t.Errorf("auditor may %s", act)
		}
		if !d.Allowed && read && act != "signature.verify" {
			t.Errorf("auditor may not read %s: %s", act, d.Rule)
		}
	}
}

func TestLoadAuthzRejects(t *testing.T) {
	const head = "actions:\n  a.read: r\n  a.write: w\npublic: []\n"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown field", head + "roles:\n  r:\n    permisions: []\n", "permisions"},
		{"undeclared action", head + "roles:\n  r:\n    permissions:\n      - {action: a.delete}\n", "a.delete"},
		{"bad scope", head + "roles:\n  r:\n    permissions:\n      - {action: a.read, scope: everyone}\n", "everyone"},
		{"except without wildcard", head + "roles:\n  r:\n    permissions:\n      - {action: a.read, except: [a.write]}\n", "except"},
		{"except undeclared", head + "roles:\n  r:\n    permissions:\n      - {action: '*', except: [b.x]}\n", "b.x"},
		{"empty profiles", head + "roles:\n  r:\n    permissions:\n      - {action: a.read, profiles: []}\n", "profiles"},
		{"public undeclared", "actions:\n  a.read: r\npublic: [a.write]\nroles:\n  r:\n    permissions:\n      - {action: a.read}\n", "a.write"},
		{"bad role name", head + "roles:\n  Root:\n    permissions:\n      - {action: a.read}\n", "Root"},
		{"role without permissions", head + "roles:\n  r: {description: x}\n", "no permissions"},
		{"no roles", head, "no roles"},
		{"no actions", "roles:\n  r:\n    permissions:\n      - {action: '*'}\n", "no actions"},
		{"bad action name", "actions:\n  Read: r\nroles:\n  r:\n    permissions:\n      - {action: '*'}\n", "Read"},
		{"not YAML", "{{", ""},
	}
	for _, tt := range tests {
		_, err := LoadAuthz(strings.NewReader(tt.yaml))
		if err == nil || !errors.Is(err, ErrAuthz) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestLoadAuthzWildcardExcept(t *testing.T) {
	a, err := LoadAuthz(strings.NewReader(`
actions:
  a.read: r
  a.write: w
roles:
  r:
    permissions:
      - {action: '*', except: [a.write]}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Name: "x", Roles: []string{"r"}}
	if !a.Decide(p, "a.read", Resource{}).Allowed || a.Decide(p, "a.write", Resource{}).Allowed {
		t.Fatal("except ignored")
	}
	if got := a.Actions(); !slices.Equal(got, []string{"a.read", "a.write"}) {
		t.Fatalf("Actions() = %v", got)
	}
}

package policies

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// embedded holds the profiles shipped with gmtrust.
//
//go:embed profiles/*.yaml
var embedded embed.FS

// ErrUnknownProfile is returned (wrapped, with the name) by Set.Get.
var ErrUnknownProfile = errors.New("policies: unknown profile")

// maxFileSize bounds a profile file; real ones are a few kilobytes.
const maxFileSize = 1 << 20

// Set is an immutable collection of validated profiles, safe for
// concurrent use.
type Set struct {
	profiles map[string]*Profile
}

// Get returns a copy of the profile called name.
func (s *Set) Get(name string) (*Profile, error) {
	if s != nil {
		if p, ok := s.profiles[name]; ok {
			return p.clone(), nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownProfile, name)
}

// Names returns the profile names in sorted order.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.profiles))
	for n := range s.profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Load reads every *.yaml (and *.yml) file in the root of fsys, one
// profile per file, and validates them all. Subdirectories and other files
// are ignored. It fails if a file is invalid or if there is no profile.
func Load(fsys fs.FS) (*Set, error) {
	m, err := loadFS(fsys, func(name string) string { return name })
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, &FieldError{Err: errors.New("no *.yaml profile files found")}
	}
	return &Set{profiles: m}, nil
}

// Default returns the profiles shipped with gmtrust.
func Default() (*Set, error) {
	sub, err := fs.Sub(embedded, "profiles")
	if err != nil {
		return nil, fmt.Errorf("policies: embedded profiles: %w", err)
	}
	return Load(sub)
}

// LoadDir returns the shipped profiles overlaid by the profile files in
// dir: a file whose profile has the name of a shipped one replaces it,
// other files add profiles. Errors name the file by its path in dir.
func LoadDir(dir string) (*Set, error) {
	if dir == "" {
		return nil, errors.New("policies: LoadDir: empty directory name")
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("policies: %s is not a directory", dir)
	}
	set, err := Default()
	if err != nil {
		return nil, err
	}
	overlay, err := loadFS(os.DirFS(dir), func(name string) string { return filepath.Join(dir, name) })
	if err != nil {
		return nil, err
	}
	for name, p := range overlay {
		set.profiles[name] = p
	}
	return set, nil
}

// loadFS parses the profile files in the root of fsys; display turns a
// file name into the name used in errors.
func loadFS(fsys fs.FS, display func(string) string) (map[string]*Profile, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	profiles := make(map[string]*Profile)
	files := make(map[string]string) // profile name -> file that defined it
	for _, e := range entries {
		ext := path.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p, err := loadFile(fsys, e.Name())
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.File = display(e.Name())
				return nil, fe
			}
			return nil, fmt.Errorf("policies: %s: %w", display(e.Name()), err)
		}
		if prev, dup := files[p.Name]; dup {
			return nil, &FieldError{
				File:  display(e.Name()),
				Field: "name",
				Err:   fmt.Errorf("duplicate profile %q, also defined in %s", p.Name, display(prev)),
			}
		}
		files[p.Name] = e.Name()
		profiles[p.Name] = p
	}
	return profiles, nil
}

// loadFile parses and validates one profile file.
func loadFile(fsys fs.FS, name string) (*Profile, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, &FieldError{Err: fmt.Errorf("larger than %d bytes", maxFileSize)}
	}
	p, err := parseProfile(data)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	// Tying the name to the file keeps overrides in LoadDir predictable:
	// replacing staff-sign means writing staff-sign.yaml.
	if base := strings.TrimSuffix(name, path.Ext(name)); p.Name != base {
		return nil, fieldErr("name", "%q does not match the file name (want %q)", p.Name, base)
	}
	return p, nil
}

// parseProfile decodes exactly one YAML document, rejecting unknown fields
// so that a misspelt rule cannot silently fall back to a permissive zero.
func parseProfile(data []byte) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Err: errors.New("empty file")}
		}
		return nil, &FieldError{Err: err}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &FieldError{Err: errors.New("more than one YAML document")}
	case !errors.Is(err, io.EOF):
		return nil, &FieldError{Err: err}
	}
	return &p, nil
}

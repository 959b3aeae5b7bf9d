// Package runas starts a program inside an app's identity: its cgroup, then
// its user, then exec. It is what `pinhole run` does on devices without
// systemd.
package runas

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"

	"github.com/pinhole-net/pinhole/internal/config"
)

// Target is the identity a process takes before it execs the app.
type Target struct {
	// Cgroup, if not empty, is the cgroup v2 path (relative to the root) the
	// process moves into.
	Cgroup string
	// ChangeUser says whether to switch to UID, GID and Groups.
	ChangeUser bool
	UID, GID   uint32
	Groups     []uint32
}

func (t Target) String() string {
	s := ""
	if t.Cgroup != "" {
		s = "cgroup " + t.Cgroup
	}
	if t.ChangeUser {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("uid %d gid %d", t.UID, t.GID)
	}
	if s == "" {
		return "unchanged identity"
	}
	return s
}

// Users looks up accounts; tests replace it.
type Users interface {
	// ByName returns the uid, primary gid and supplementary groups of a user.
	ByName(name string) (uid, gid uint32, groups []uint32, err error)
	// ByID is ByName for a uid; ok is false when the uid has no account.
	ByID(uid uint32) (gid uint32, groups []uint32, ok bool)
}

// SystemUsers reads the system's user database.
type SystemUsers struct{}

func (SystemUsers) ByName(name string) (uint32, uint32, []uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, nil, err
	}
	return accountIDs(u)
}

func (SystemUsers) ByID(uid uint32) (uint32, []uint32, bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return 0, nil, false
	}
	_, gid, groups, err := accountIDs(u)
	return gid, groups, err == nil
}

func accountIDs(u *user.User) (uid, gid uint32, groups []uint32, err error) {
	uid64, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid64, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	ids, _ := u.GroupIds() // a user without supplementary groups is fine
	for _, g := range ids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != uint32(gid64) {
			groups = append(groups, uint32(n))
		}
	}
	return uint32(uid64), uint32(gid64), groups, nil
}

// Resolve gives the Target of an app. asUser, if not empty, is a user name
// or number to switch to as well; it is how a cgroup-identified app avoids
// running as root. For a UID-identified app it must agree with the config.
func Resolve(app config.App, asUser string, users Users) (Target, error) {
	var t Target
	switch app.Identity.Kind {
	case config.IdentityCgroup:
		t.Cgroup = app.Identity.Cgroup
	case config.IdentityUID:
		t.ChangeUser, t.UID = true, app.Identity.UID
		if gid, groups, ok := users.ByID(t.UID); ok {
			t.GID, t.Groups = gid, groups
		} else {
			t.GID = t.UID // no account: a group of the same number, as systemd's DynamicUser does
		}
	case config.IdentityUser:
		uid, gid, groups, err := users.ByName(app.Identity.User)
		if err != nil {
			return Target{}, fmt.Errorf("app %q: user %q: %w", app.Name, app.Identity.User, err)
		}
		t.ChangeUser, t.UID, t.GID, t.Groups = true, uid, gid, groups
	default:
		return Target{}, fmt.Errorf("app %q has no identity", app.Name)
	}
	if asUser == "" {
		return t, nil
	}
	var uid, gid uint32
	var groups []uint32
	if n, err := strconv.ParseUint(asUser, 10, 32); err == nil {
		uid = uint32(n)
		var ok bool
		if gid, groups, ok = users.ByID(uid); !ok {
			gid = uid
		}
	} else {
		var err error
		if uid, gid, groups, err = users.ByName(asUser); err != nil {
			return Target{}, fmt.Errorf("--user %q: %w", asUser, err)
		}
	}
	if t.ChangeUser && uid != t.UID {
		return Target{}, fmt.Errorf("app %q is identified by uid %d; --user %s (uid %d) would put it outside its identity", app.Name, t.UID, asUser, uid)
	}
	t.ChangeUser, t.UID, t.GID, t.Groups = true, uid, gid, groups
	if t.UID == 0 {
		return Target{}, errors.New("--user must not be root")
	}
	return t, nil
}

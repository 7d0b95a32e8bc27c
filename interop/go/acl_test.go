package interop

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

const anonymousAccessor = "00000000-0000-0000-0000-000000000002"

func denied(accessor, permission string) string {
	return "Permission denied: token with AccessorID '" + accessor + "' lacks permission '" + permission + "'"
}

// TestACLDisabled (issue 12 item 3): with ACLs off every /v1/acl/ call answers
// 401 "ACL support disabled", as Consul does.
func TestACLDisabled(t *testing.T) {
	t.Parallel()
	acl := clusterA(t).Client(t, "").ACL()
	const body = "ACL support disabled"
	calls := map[string]func() error{
		"Bootstrap": func() error { _, _, err := acl.Bootstrap(); return err },
		"PolicyCreate": func() error {
			_, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "p", Rules: `peering = "read"`}, nil)
			return err
		},
		"PolicyList":    func() error { _, _, err := acl.PolicyList(nil); return err },
		"TokenCreate":   func() error { _, _, err := acl.TokenCreate(&api.ACLToken{Description: "x"}, nil); return err },
		"TokenList":     func() error { _, _, err := acl.TokenList(nil); return err },
		"TokenReadSelf": func() error { _, _, err := acl.TokenReadSelf(nil); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { wantStatus(t, call(), 401, body) })
	}
}

// TestACLBootstrap: Bootstrap works once on a fresh cluster with ACLs on; the token it
// gives is a management token; anonymous callers are denied with Consul's message.
func TestACLBootstrap(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--acl-enabled")
	anonymous := c.Client(t, "")
	ctx := ctxFor(t, 30*time.Second)

	_, _, err := anonymous.Peerings().List(ctx, nil)
	wantStatus(t, err, 403, denied(anonymousAccessor, "peering:read"))

	boot, _, err := anonymous.ACL().Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	if !uuidPattern.MatchString(boot.AccessorID) || !uuidPattern.MatchString(boot.SecretID) {
		t.Fatalf("bootstrap token: AccessorID %q SecretID %q", boot.AccessorID, boot.SecretID)
	}
	if !slices.ContainsFunc(boot.Policies, func(l *api.ACLTokenPolicyLink) bool { return l.Name == "global-management" }) {
		t.Fatalf("bootstrap token's policies: %v", boot.Policies)
	}
	_, _, err = anonymous.ACL().Bootstrap()
	wantStatus(t, err, 403, "ACL bootstrap no longer allowed")

	management := c.Client(t, boot.SecretID)
	self, meta, err := management.ACL().TokenReadSelf(nil)
	if err != nil {
		t.Fatal(err)
	}
	if self.AccessorID != boot.AccessorID || self.SecretID != "" {
		t.Fatalf("TokenReadSelf: AccessorID %q (want %q), SecretID shown again: %v", self.AccessorID, boot.AccessorID, self.SecretID != "")
	}
	if meta.LastIndex == 0 {
		t.Fatal("TokenReadSelf without X-Consul-Index")
	}
	if _, _, err := management.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "with-acl"}, nil); err != nil {
		t.Fatal(err)
	}
	list, _, err := management.Peerings().List(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("List as management: %v, %v", list, err)
	}
}

// TestACLPolicyCRUD: PolicyCreate/Read/ReadByName/Update/List/Delete with the client's structs.
func TestACLPolicyCRUD(t *testing.T) {
	t.Parallel()
	acl := aclCluster(t).Client(t, managementSecret).ACL()

	created, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "crud-policy", Description: "first", Rules: `peering = "read"`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidPattern.MatchString(created.ID) || created.Name != "crud-policy" || created.Rules != `peering = "read"` ||
		created.Description != "first" || created.CreateIndex == 0 {
		t.Fatalf("PolicyCreate: %+v", created)
	}
	read, meta, err := acl.PolicyRead(created.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if read.ID != created.ID || read.Rules != created.Rules || meta.LastIndex == 0 {
		t.Fatalf("PolicyRead: %+v (index %d)", read, meta.LastIndex)
	}
	byName, _, err := acl.PolicyReadByName("crud-policy", nil)
	if err != nil || byName == nil || byName.ID != created.ID {
		t.Fatalf("PolicyReadByName: %+v, %v", byName, err)
	}

	// Read, modify, write back: what Terraform does with the struct it read.
	read.Description = "second"
	read.Rules = `{"peering": "write"}`
	updated, _, err := acl.PolicyUpdate(read, nil)
	if err != nil {
		t.Fatal(err)
	}
	if updated.ID != created.ID || updated.Description != "second" || updated.Rules != `{"peering": "write"}` ||
		updated.ModifyIndex <= created.ModifyIndex {
		t.Fatalf("PolicyUpdate: %+v", updated)
	}

	list, _, err := acl.PolicyList(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(p *api.ACLPolicyListEntry) bool { return p.ID == created.ID && p.Name == "crud-policy" }) {
		t.Fatalf("PolicyList lacks the policy: %v", list)
	}
	if !slices.ContainsFunc(list, func(p *api.ACLPolicyListEntry) bool { return p.Name == "global-management" }) {
		t.Fatalf("PolicyList lacks global-management: %v", list)
	}

	if _, err := acl.PolicyDelete(created.ID, nil); err != nil {
		t.Fatal(err)
	}
	gone, _, err := acl.PolicyReadByName("crud-policy", nil)
	if err != nil || gone != nil {
		t.Fatalf("PolicyReadByName after delete: %+v, %v (want nil, nil)", gone, err)
	}
	if _, _, err := acl.PolicyRead(created.ID, nil); err == nil {
		t.Fatal("PolicyRead of a deleted policy succeeded")
	} else if se := statusError(t, err); se.Code >= 500 {
		t.Fatalf("PolicyRead of a deleted policy: %d %q", se.Code, se.Body)
	}
}

// TestACLTokenCRUD (issue 12 item 1): TokenCreate with the client's defaults (empty
// AccessorID and SecretID), TokenRead, TokenReadSelf, TokenUpdate without a SecretID,
// TokenList and TokenDelete, and what the token is allowed to do at each step.
func TestACLTokenCRUD(t *testing.T) {
	t.Parallel()
	c := aclCluster(t)
	acl := c.Client(t, managementSecret).ACL()
	ctx := ctxFor(t, 30*time.Second)
	for _, p := range []*api.ACLPolicy{
		{Name: "crud-token-read", Rules: `peering = "read"`},
		{Name: "crud-token-write", Rules: `peering = "write"`},
	} {
		if _, _, err := acl.PolicyCreate(p, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The client's zero values: AccessorID "", SecretID "", CreateTime zero, Local false.
	created, _, err := acl.TokenCreate(&api.ACLToken{
		Description: "crud", Policies: []*api.ACLTokenPolicyLink{{Name: "crud-token-read"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidPattern.MatchString(created.AccessorID) || !uuidPattern.MatchString(created.SecretID) {
		t.Fatalf("TokenCreate: AccessorID %q, SecretID %q: want generated UUIDs", created.AccessorID, created.SecretID)
	}
	if len(created.Policies) != 1 || created.Policies[0].Name != "crud-token-read" || !uuidPattern.MatchString(created.Policies[0].ID) {
		t.Fatalf("TokenCreate policies: %+v", created.Policies)
	}
	accessor, secret := created.AccessorID, created.SecretID

	read, _, err := acl.TokenRead(accessor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if read.AccessorID != accessor || read.Description != "crud" || read.SecretID != "" {
		t.Fatalf("TokenRead: AccessorID %q Description %q SecretID shown: %v", read.AccessorID, read.Description, read.SecretID != "")
	}

	reader := c.Client(t, secret)
	self, _, err := reader.ACL().TokenReadSelf(nil)
	if err != nil {
		t.Fatal(err)
	}
	if self.AccessorID != accessor {
		t.Fatalf("TokenReadSelf: %q, want %q", self.AccessorID, accessor)
	}
	if _, _, err := reader.Peerings().List(ctx, nil); err != nil {
		t.Fatalf("List with a peering:read token: %v", err)
	}
	_, _, err = reader.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "crud-denied"}, nil)
	wantStatus(t, err, 403, denied(accessor, "peering:write"))

	// TokenUpdate without a SecretID: the struct TokenRead gave back, modified.
	read.Description = "crud-updated"
	read.Policies = []*api.ACLTokenPolicyLink{{Name: "crud-token-write"}}
	updated, _, err := acl.TokenUpdate(read, nil)
	if err != nil {
		t.Fatal(err)
	}
	if updated.AccessorID != accessor || updated.Description != "crud-updated" {
		t.Fatalf("TokenUpdate: %+v", updated)
	}
	// A minimal update, as Terraform sends it: AccessorID, Description, Policies, no SecretID.
	updated, _, err = acl.TokenUpdate(&api.ACLToken{
		AccessorID: accessor, Description: "crud-minimal", Policies: []*api.ACLTokenPolicyLink{{Name: "crud-token-write"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Description != "crud-minimal" {
		t.Fatalf("minimal TokenUpdate: %+v", updated)
	}
	if _, _, err := reader.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "crud-allowed"}, nil); err != nil {
		t.Fatalf("the old secret after an update to peering:write: %v", err)
	}

	list, _, err := acl.TokenList(nil)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(e *api.ACLTokenListEntry) bool { return e.AccessorID == accessor })
	if i < 0 {
		t.Fatalf("TokenList lacks %s", accessor)
	}
	if list[i].Description != "crud-minimal" || list[i].SecretID != "" {
		t.Fatalf("TokenList entry: Description %q, SecretID shown: %v", list[i].Description, list[i].SecretID != "")
	}

	if _, err := acl.TokenDelete(accessor, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = reader.Peerings().List(ctx, nil)
	wantStatus(t, err, 403, "ACL not found")
	if _, _, err := acl.TokenRead(accessor, nil); err == nil {
		t.Fatal("TokenRead of a deleted token succeeded")
	} else if se := statusError(t, err); se.Code >= 500 {
		t.Fatalf("TokenRead of a deleted token: %d %q", se.Code, se.Body)
	}
}

// TestACLTokenChosenIDs: a caller may choose the AccessorID and SecretID, as in Consul.
func TestACLTokenChosenIDs(t *testing.T) {
	t.Parallel()
	c := aclCluster(t)
	acl := c.Client(t, managementSecret).ACL()
	if _, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "chosen-read", Rules: `peering = "read"`}, nil); err != nil {
		t.Fatal(err)
	}
	accessor, secret := newUUID(), newUUID()
	created, _, err := acl.TokenCreate(&api.ACLToken{
		AccessorID: accessor, SecretID: secret, Policies: []*api.ACLTokenPolicyLink{{Name: "chosen-read"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if created.AccessorID != accessor || created.SecretID != secret {
		t.Fatalf("TokenCreate with chosen IDs: %q %q", created.AccessorID, created.SecretID)
	}
	self, _, err := c.Client(t, secret).ACL().TokenReadSelf(nil)
	if err != nil || self.AccessorID != accessor {
		t.Fatalf("TokenReadSelf: %+v, %v", self, err)
	}
}

// TestACLTokenExpiry (issue 12 item 2): ExpirationTTL as a time.Duration (sent as integer
// nanoseconds) and ExpirationTime both work, and the token stops working when it expires.
func TestACLTokenExpiry(t *testing.T) {
	t.Parallel()
	c := aclCluster(t)
	acl := c.Client(t, managementSecret).ACL()
	if _, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "expiry-read", Rules: `peering = "read"`}, nil); err != nil {
		t.Fatal(err)
	}
	const ttl = 1500 * time.Millisecond
	cases := map[string]func() *api.ACLToken{
		"ExpirationTTL": func() *api.ACLToken { return &api.ACLToken{ExpirationTTL: ttl} },
		"ExpirationTime": func() *api.ACLToken {
			at := time.Now().Add(ttl)
			return &api.ACLToken{ExpirationTime: &at}
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, 30*time.Second)
			spec := build()
			spec.Description = "expiry " + name
			spec.Policies = []*api.ACLTokenPolicyLink{{Name: "expiry-read"}}
			before := time.Now()
			created, _, err := acl.TokenCreate(spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			if created.ExpirationTime == nil {
				t.Fatal("TokenCreate answered no ExpirationTime")
			}
			expires := *created.ExpirationTime
			if expires.Before(before.Add(ttl-time.Second)) || expires.After(time.Now().Add(ttl+time.Second)) {
				t.Fatalf("ExpirationTime %s, created at %s with %s", expires, before, ttl)
			}
			read, _, err := acl.TokenRead(created.AccessorID, nil)
			if err != nil || read.ExpirationTime == nil || !read.ExpirationTime.Equal(expires) {
				t.Fatalf("TokenRead: %+v, %v", read, err)
			}
			holder := c.Client(t, created.SecretID)
			if _, _, err := holder.Peerings().List(ctx, nil); err != nil {
				if time.Now().Before(expires) {
					t.Fatalf("List before expiry: %v", err)
				}
			}
			// Expiry is a clock event: wait for the moment the service announced.
			time.Sleep(time.Until(expires) + 50*time.Millisecond)
			_, _, err = holder.Peerings().List(ctx, nil)
			wantStatus(t, err, 403, "ACL not found")
		})
	}
}

// TestACLErrorBodies: a 403 from the ACL layer surfaces its body in the client's error.
func TestACLErrorBodies(t *testing.T) {
	t.Parallel()
	c := aclCluster(t)
	_, _, err := c.Client(t, newUUID()).Peerings().List(ctxFor(t, 10*time.Second), nil)
	wantStatus(t, err, 403, "ACL not found")
	if !strings.Contains(err.Error(), "403 (ACL not found)") {
		t.Fatalf("Error() = %q", err.Error())
	}
	anonymous := c.Client(t, "")
	_, _, err = anonymous.Peerings().Read(ctxFor(t, 10*time.Second), "anything", nil)
	wantStatus(t, err, 403, denied(anonymousAccessor, "peering:read"))

	// A token given per call (QueryOptions/WriteOptions.Token) is used for that call only.
	if _, _, err := anonymous.Peerings().List(ctxFor(t, 10*time.Second), &api.QueryOptions{Token: managementSecret}); err != nil {
		t.Fatalf("List with QueryOptions.Token: %v", err)
	}
	if _, err := anonymous.Peerings().Delete(ctxFor(t, 10*time.Second), "anything", &api.WriteOptions{Token: managementSecret}); err != nil {
		t.Fatalf("Delete with WriteOptions.Token: %v", err)
	}
}

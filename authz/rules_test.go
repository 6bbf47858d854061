package authz

import "testing"

func TestParseRules(t *testing.T) {
	tests := []struct {
		query   string
		wantErr bool
		sess    Session
		want    Reason
	}{
		{query: "", sess: Session{User: "x"}},
		{query: "allow_users=alice,bob", sess: Session{User: "bob"}},
		{query: "allow_users=alice&allow_users=bob", sess: Session{User: "bob"}},
		{query: "allow_users=alice,bob", sess: Session{User: "carol"}, want: ReasonUserNotAllowed},
		{query: "allow_users=alice", sess: Session{User: "Alice"}, want: ReasonUserNotAllowed},
		{query: "allow_roles=admin", sess: Session{User: "x", Roles: []string{"ops", "admin"}}},
		{query: "allow_roles=admin", sess: Session{User: "x", Roles: []string{"ops"}}, want: ReasonRoleNotAllowed},
		{query: "allow_roles=admin", sess: Session{User: "x"}, want: ReasonRoleNotAllowed},
		{query: "allow_roles=admin&allow_users=alice", sess: Session{User: "alice"}, want: ReasonRoleNotAllowed},
		{query: "allow_roles=admin&allow_users=alice", sess: Session{User: "alice", Roles: []string{"admin"}}},
		{query: "allow_role=admin", wantErr: true},
		{query: "allow_users=", wantErr: true},
		{query: "allow_users=,", wantErr: true},
		{query: "allow_users=%zz", wantErr: true},
		{query: "x=1", wantErr: true},
		{query: "access_token=pass", sess: Session{User: "x"}},
		{query: "access_token=require", sess: Session{User: "x", accessToken: "t"}},
		{query: "access_token=require", sess: Session{User: "x"}, want: ReasonNoAccessToken},
		{query: "access_token=require&allow_users=y", sess: Session{User: "x"}, want: ReasonUserNotAllowed},
		{query: "access_token=yes", wantErr: true},
		{query: "access_token=pass&access_token=require", wantErr: true},
	}
	for _, tt := range tests {
		r, err := ParseRules(tt.query)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRules(%q) error = %v; wantErr %v", tt.query, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got := r.check(&tt.sess); got != tt.want {
			t.Errorf("ParseRules(%q).check(%+v) = %q; want %q", tt.query, tt.sess, got, tt.want)
		}
	}
}

func TestRuleCacheBounded(t *testing.T) {
	var c ruleCache
	for i := range maxRuleCache + 10 {
		c.get("allow_users=u" + string(rune('a'+i%26)) + string(rune('0'+i)))
	}
	if len(c.m) > maxRuleCache {
		t.Fatalf("rule cache grew to %d", len(c.m))
	}
	c = ruleCache{}
	_, err, fresh := c.get("nope=1")
	if err == nil || !fresh {
		t.Fatalf("first bad query: err=%v fresh=%v", err, fresh)
	}
	if _, err, fresh := c.get("nope=1"); err == nil || fresh {
		t.Fatalf("second bad query: err=%v fresh=%v", err, fresh)
	}
}

package awsname_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/awsname"
)

func TestParseRoleARN(t *testing.T) {
	tests := []struct {
		in      string
		name    string // for valid ones
		path    string
		wantErr string
	}{
		{in: "arn:aws:iam::123456789012:role/sluice-export", name: "sluice-export", path: "/"},
		{in: "arn:aws-us-gov:iam::123456789012:role/team/data/Export_Role+1", name: "Export_Role+1", path: "/team/data/"},
		{in: "arn:aws-cn:iam::123456789012:role/a", name: "a", path: "/"},
		{in: "", wantErr: "must be an IAM role ARN"},
		{in: "arn:aws:iam::123456789012:user/bob", wantErr: "role/"},
		{in: "arn:aws:iam::12345:role/x", wantErr: "12 digits"},
		{in: "arn:aws:iam:us-east-1:123456789012:role/x", wantErr: "no region"},
		{in: "arn:aws:s3::123456789012:role/x", wantErr: "service must be iam"},
		{in: "arn:azure:iam::123456789012:role/x", wantErr: "partition"},
		{in: "arn:aws:iam::123456789012:role/", wantErr: "role name"},
		{in: "arn:aws:iam::123456789012:role/" + strings.Repeat("r", 65), wantErr: "role name"},
		{in: "arn:aws:iam::123456789012:role/bad name", wantErr: "role name"},
	}
	for _, tt := range tests {
		r, err := awsname.ParseRoleARN(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRoleARN(%q) = %v, want error with %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r.Name != tt.name || r.Path != tt.path || r.String() != tt.in {
			t.Errorf("ParseRoleARN(%q) = %+v, %v", tt.in, r, err)
		}
	}
}

func TestCheckBucketName(t *testing.T) {
	valid := []string{"abc", "acme-exports", "acme.exports.2026", strings.Repeat("a", 63), "a-.b"}
	invalid := map[string]string{
		"ab":                      "3 to 63",
		strings.Repeat("a", 64):   "3 to 63",
		"Acme":                    "lowercase",
		"acme_exports":            "lowercase",
		"-acme":                   "begin and end",
		"acme.":                   "begin and end",
		"acme..exports":           "adjacent dots",
		"192.168.5.4":             "IP address",
		"xn--acme":                "reserved prefix",
		"sthree-acme":             "reserved prefix",
		"acme-s3alias":            "reserved suffix",
		"acme--ol-s3":             "reserved suffix",
		"amzn-s3-demo-bucket-one": "reserved prefix",
	}
	for _, s := range valid {
		if err := awsname.CheckBucketName(s); err != nil {
			t.Errorf("CheckBucketName(%q) = %v, want valid", s, err)
		}
	}
	for s, want := range invalid {
		if err := awsname.CheckBucketName(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckBucketName(%q) = %v, want error with %q", s, err, want)
		}
	}
}

func TestParseBucket(t *testing.T) {
	b, err := awsname.ParseBucket("arn:aws:s3:eu-west-1:123456789012:accesspoint/exports")
	if err != nil || b.AccessPoint == nil || b.AccessPoint.Name != "exports" || b.AccessPoint.Region != "eu-west-1" {
		t.Fatalf("access point: %+v, %v", b, err)
	}
	if b, err := awsname.ParseBucket("acme-exports"); err != nil || b.Name != "acme-exports" || b.AccessPoint != nil {
		t.Fatalf("bucket: %+v, %v", b, err)
	}
	for in, want := range map[string]string{
		"arn:aws:s3:eu-west-1:123456789012:accesspoint/Ex": "access point name",
		"arn:aws:s3:eu-west-1:123456789012:bucket/x":       "accesspoint/",
		"arn:aws:s3:mars-1:123456789012:accesspoint/abc":   "region",
		"arn:aws:iam::123456789012:role/x":                 "access point ARN",
	} {
		if _, err := awsname.ParseBucket(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBucket(%q) = %v, want error with %q", in, err, want)
		}
	}
}

func TestSmallChecks(t *testing.T) {
	for _, s := range []string{"us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4"} {
		if err := awsname.CheckRegion(s); err != nil {
			t.Errorf("CheckRegion(%q) = %v", s, err)
		}
	}
	// Issue 9, item 10: zz-fake-9 and isolated partitions' regions, which
	// ARNs refuse, were accepted as regions.
	for _, s := range []string{"", "us-east", "US-EAST-1", "useast1", "zz-fake-9", "us-iso-east-1", "us-isob-east-1", "eu-west-0", "us-east-1\n"} {
		if awsname.CheckRegion(s) == nil {
			t.Errorf("CheckRegion(%q) accepted", s)
		}
	}
	if err := awsname.CheckAccessKeyID("AKIAIOSFODNN7EXAMPLE"); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"", "AKIA", "akiaiosfodnn7example", "AKIAIOSFODNN7EXAMPLE!"} {
		if awsname.CheckAccessKeyID(s) == nil {
			t.Errorf("CheckAccessKeyID(%q) accepted", s)
		}
	}
	for _, s := range []string{"ab", "Sluice+=,.@:/-_x9", strings.Repeat("x", 1224)} {
		if err := awsname.CheckExternalID(s); err != nil {
			t.Errorf("CheckExternalID(%d chars) = %v", len(s), err)
		}
	}
	for _, s := range []string{"a", strings.Repeat("x", 1225), "has space", "semi;colon"} {
		if awsname.CheckExternalID(s) == nil {
			t.Errorf("CheckExternalID(%q) accepted", s)
		}
	}
}

func FuzzParseRoleARN(f *testing.F) {
	f.Add("arn:aws:iam::123456789012:role/team/x")
	f.Add("arn:aws:iam::123456789012:role/")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := awsname.ParseRoleARN(s)
		if err == nil && r.String() != s {
			t.Fatalf("accepted %q but prints %q", s, r.String())
		}
	})
}

func FuzzParseBucket(f *testing.F) {
	f.Add("acme-exports")
	f.Add("arn:aws:s3:us-east-1:123456789012:accesspoint/exports")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := awsname.ParseBucket(s)
		if err != nil {
			return
		}
		if b.AccessPoint != nil && b.AccessPoint.String() != s {
			t.Fatalf("accepted %q but prints %q", s, b.AccessPoint.String())
		}
		if b.AccessPoint == nil && (b.Name != s || len(s) < 3 || len(s) > 63) {
			t.Fatalf("accepted bucket %q as %q", s, b.Name)
		}
	})
}

func TestCheckKMSKeyID(t *testing.T) {
	for _, s := range []string{
		"1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab", "alias/exports", "alias/aws/s3",
		"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"arn:aws:kms:eu-west-1:111122223333:alias/exports",
	} {
		if err := awsname.CheckKMSKeyID(s); err != nil {
			t.Errorf("CheckKMSKeyID(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "my-key", "alias/", "arn:aws:kms:us-east-1:1111:key/x", "arn:aws:s3:::bucket", "1234ABCD-12AB-34CD-56EF-1234567890AB",
		// Issue 9, item 10: anything after alias/aws/ passed.
		"alias/aws/s3\r\nX-Injected: 1", "alias/aws/" + strings.Repeat("k", 100000), "alias/aws/s3 ",
		"arn:aws:kms:zz-fake-9:111122223333:alias/exports", "arn:aws-cn:kms:us-east-1:111122223333:alias/exports"} {
		if awsname.CheckKMSKeyID(s) == nil {
			t.Errorf("CheckKMSKeyID(%q) accepted", s)
		}
	}
}

func TestCheckKeyPrefixAndObjectKey(t *testing.T) {
	for _, p := range []string{"", "exports/", "c360/2026/", "a.b/c..d/", "données/été/", strings.Repeat("a", 900)} {
		if err := awsname.CheckKeyPrefix(p); err != nil {
			t.Errorf("CheckKeyPrefix(%q) = %v", p, err)
		}
	}
	// Issue 9, item 9: each of these was stored and previewed.
	for p, want := range map[string]string{
		"/exports/":              "leading slash",
		"exports//x/":            "empty segment",
		"../../etc/":             `".." segment`,
		"exports/./x/":           `"." segment`,
		"exports/..":             `".." segment`,
		"x\r\n/":                 "control",
		"x\x00":                  "control",
		"rep\u202eort/":          "control or formatting",
		"zero\u200bwidth/":       "control or formatting",
		strings.Repeat("a", 901): "at most 900",
		"\xff/":                  "UTF-8",
	} {
		if err := awsname.CheckKeyPrefix(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckKeyPrefix(%q) = %v, want an error about %s", p, err, want)
		}
	}
	for _, k := range []string{"exports/c360.csv", "c360/2026/11/25/part-00001.parquet"} {
		if err := awsname.CheckObjectKey(k); err != nil {
			t.Errorf("CheckObjectKey(%q) = %v", k, err)
		}
	}
	for _, k := range []string{"", "exports/", "/etc/cron.d/x", "exports//../../etc/cron.d/x\r\n.json", strings.Repeat("k", 1025)} {
		if awsname.CheckObjectKey(k) == nil {
			t.Errorf("CheckObjectKey(%q) accepted", k)
		}
	}
	// A credential's prefix is pasted into an IAM policy: no wildcards or
	// policy variables that would widen it.
	for _, p := range []string{"exports/*", "exp?rts/", "${aws:username}/"} {
		if awsname.CheckPolicyPrefix(p) == nil {
			t.Errorf("CheckPolicyPrefix(%q) accepted", p)
		}
		if err := awsname.CheckKeyPrefix(p); err != nil {
			t.Errorf("CheckKeyPrefix(%q) = %v: a destination prefix may hold it", p, err)
		}
	}
}

func FuzzCheckObjectKey(f *testing.F) {
	for _, s := range []string{"a/b.csv", "../x", "a//b", "a/./b", "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if awsname.CheckObjectKey(k) != nil {
			return
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", k, seg)
			}
		}
		if _, bad := awsname.UnsafeRune(k); bad {
			t.Fatalf("accepted %q with an unsafe rune", k)
		}
	})
}

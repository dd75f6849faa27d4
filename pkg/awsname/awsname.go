// Package awsname checks the AWS names a customer types into Sluice: IAM
// role ARNs, S3 bucket names, S3 access point ARNs, regions, access key ids
// and External IDs. Each check answers an error that states the rule the
// value breaks, in words for the person who typed it.
package awsname

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Partitions Sluice accepts in ARNs.
var partitions = map[string]bool{"aws": true, "aws-cn": true, "aws-us-gov": true}

var (
	accountID = regexp.MustCompile(`^[0-9]{12}$`)
	// IAM role names: 1 to 64 of letters, digits and +=,.@_-; paths are
	// `/`-delimited segments of the same plus printable ASCII, at most 512.
	roleName = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	rolePath = regexp.MustCompile(`^/([\x21-\x7e]*/)?$`)
	// Access key ids are 16 to 128 word characters; AWS issues them as
	// AKIA (long-term) or ASIA (temporary) followed by 16 uppercase
	// letters and digits.
	accessKeyID = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	externalID  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	bucketChars = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)
	apName      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{1,48})[a-z0-9]$`)
)

// RoleARN is a parsed IAM role ARN.
type RoleARN struct {
	Partition, Account, Path, Name string
}

// String answers the ARN.
func (r RoleARN) String() string {
	return "arn:" + r.Partition + ":iam::" + r.Account + ":role" + r.Path + r.Name
}

// ParseRoleARN reads `arn:{partition}:iam::{account}:role/{path/}{name}`.
func ParseRoleARN(s string) (RoleARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return RoleARN{}, errors.New("must be an IAM role ARN such as arn:aws:iam::123456789012:role/sluice-export")
	}
	r := RoleARN{Partition: parts[1], Account: parts[4]}
	if !partitions[r.Partition] {
		return RoleARN{}, fmt.Errorf("partition %q is not one of aws, aws-cn, aws-us-gov", clip(r.Partition))
	}
	if parts[2] != "iam" {
		return RoleARN{}, fmt.Errorf("service must be iam, not %q", clip(parts[2]))
	}
	if parts[3] != "" {
		return RoleARN{}, errors.New("IAM ARNs have no region: the fourth field must be empty")
	}
	if !accountID.MatchString(r.Account) {
		return RoleARN{}, errors.New("account must be 12 digits")
	}
	res, ok := strings.CutPrefix(parts[5], "role/")
	if !ok {
		return RoleARN{}, errors.New("resource must start with role/")
	}
	i := strings.LastIndexByte(res, '/')
	r.Path, r.Name = "/"+res[:i+1], res[i+1:] // i = -1 leaves path "/"
	if len(r.Path) > 512 || !rolePath.MatchString(r.Path) {
		return RoleARN{}, errors.New("role path must be at most 512 printable characters between slashes")
	}
	if !roleName.MatchString(r.Name) {
		return RoleARN{}, errors.New("role name must be 1 to 64 letters, digits or +=,.@_-")
	}
	return r, nil
}

// CheckBucketName applies the S3 general purpose bucket naming rules.
func CheckBucketName(s string) error {
	switch {
	case len(s) < 3 || len(s) > 63:
		return fmt.Errorf("must be 3 to 63 characters long; got %d", len(s))
	case !bucketChars.MatchString(s):
		return errors.New("may hold only lowercase letters, digits, dots and hyphens, and must begin and end with a letter or digit")
	case strings.Contains(s, ".."):
		return errors.New("must not contain two adjacent dots")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return errors.New("must not be formatted as an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(s, p) {
			return fmt.Errorf("must not start with the reserved prefix %q", p)
		}
	}
	for _, suf := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(s, suf) {
			return fmt.Errorf("must not end with the reserved suffix %q", suf)
		}
	}
	return nil
}

// AccessPointARN is a parsed S3 access point ARN.
type AccessPointARN struct {
	Partition, Region, Account, Name string
}

// String answers the ARN.
func (a AccessPointARN) String() string {
	return "arn:" + a.Partition + ":s3:" + a.Region + ":" + a.Account + ":accesspoint/" + a.Name
}

// ParseAccessPointARN reads `arn:{partition}:s3:{region}:{account}:accesspoint/{name}`.
func ParseAccessPointARN(s string) (AccessPointARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "s3" {
		return AccessPointARN{}, errors.New("must be an S3 access point ARN such as arn:aws:s3:us-east-1:123456789012:accesspoint/exports")
	}
	a := AccessPointARN{Partition: parts[1], Region: parts[3], Account: parts[4]}
	if !partitions[a.Partition] {
		return AccessPointARN{}, fmt.Errorf("partition %q is not one of aws, aws-cn, aws-us-gov", clip(a.Partition))
	}
	if err := checkRegionIn(a.Region, a.Partition); err != nil {
		return AccessPointARN{}, fmt.Errorf("region %w", err)
	}
	if !accountID.MatchString(a.Account) {
		return AccessPointARN{}, errors.New("account must be 12 digits")
	}
	name, ok := strings.CutPrefix(parts[5], "accesspoint/")
	if !ok {
		return AccessPointARN{}, errors.New("resource must start with accesspoint/")
	}
	if !apName.MatchString(name) {
		return AccessPointARN{}, errors.New("access point name must be 3 to 50 lowercase letters, digits or hyphens, beginning and ending with a letter or digit")
	}
	a.Name = name
	return a, nil
}

// Bucket is where objects go: a bucket name or an access point ARN.
type Bucket struct {
	// Name is set for a plain bucket.
	Name string
	// AccessPoint is set for an access point.
	AccessPoint *AccessPointARN
}

// ParseBucket accepts a bucket name or an access point ARN.
func ParseBucket(s string) (Bucket, error) {
	if strings.HasPrefix(s, "arn:") {
		ap, err := ParseAccessPointARN(s)
		if err != nil {
			return Bucket{}, err
		}
		return Bucket{AccessPoint: &ap}, nil
	}
	if err := CheckBucketName(s); err != nil {
		return Bucket{}, err
	}
	return Bucket{Name: s}, nil
}

// Regions by partition: the geography prefixes AWS uses, a direction and a
// number. The same rule serves region fields and the region inside ARNs, so
// a region one check accepts the other does too.
var regionsByPartition = map[string]*regexp.Regexp{
	"aws":        regexp.MustCompile(`^(us|eu|ap|sa|ca|me|af|il|mx)-(north|south|east|west|central|northeast|southeast|northwest|southwest)-[1-9]$`),
	"aws-cn":     regexp.MustCompile(`^cn-(north|northwest)-[1-9]$`),
	"aws-us-gov": regexp.MustCompile(`^us-gov-(east|west)-[1-9]$`),
}

// RegionPartition answers the partition of a region, or an error naming
// the rule it breaks.
func RegionPartition(s string) (string, error) {
	for _, p := range []string{"aws-us-gov", "aws-cn", "aws"} {
		if regionsByPartition[p].MatchString(s) {
			return p, nil
		}
	}
	return "", fmt.Errorf("must be an AWS region of the aws, aws-cn or aws-us-gov partition, such as us-east-1; got %q", clip(s))
}

// CheckRegion checks an AWS region such as us-east-1.
func CheckRegion(s string) error {
	_, err := RegionPartition(s)
	return err
}

// checkRegionIn checks that region belongs to partition, as ARNs need.
func checkRegionIn(region, partition string) error {
	p, err := RegionPartition(region)
	if err != nil {
		return err
	}
	if p != partition {
		return fmt.Errorf("%s is a region of the %s partition, not %s", region, p, partition)
	}
	return nil
}

// CheckAccessKeyID checks the shape of an IAM access key id.
func CheckAccessKeyID(s string) error {
	if !accessKeyID.MatchString(s) {
		return errors.New("must be an IAM access key id: 16 to 128 uppercase letters and digits, such as AKIAIOSFODNN7EXAMPLE")
	}
	return nil
}

// CheckExternalID checks an STS External ID.
func CheckExternalID(s string) error {
	if len(s) < 2 || len(s) > 1224 || !externalID.MatchString(s) {
		return errors.New("must be 2 to 1224 characters of letters, digits and +=,.@:/-")
	}
	return nil
}

var (
	kmsKeyID  = regexp.MustCompile(`^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	kmsAlias  = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
	kmsARN    = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]{1,30}):([0-9]{12}):(key/.+|alias/.+)$`)
	kmsKeyRes = regexp.MustCompile(`^key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
)

// CheckKMSKeyID accepts what S3 takes as an SSE-KMS key: a key id, a
// multi-Region key id, an alias (AWS managed ones such as alias/aws/s3
// included), or the ARN of a key or alias in a region of its partition.
func CheckKMSKeyID(s string) error {
	if kmsKeyID.MatchString(s) || kmsAlias.MatchString(s) {
		return nil
	}
	if m := kmsARN.FindStringSubmatch(s); m != nil {
		if err := checkRegionIn(m[2], m[1]); err != nil {
			return fmt.Errorf("KMS key ARN region %w", err)
		}
		if kmsKeyRes.MatchString(m[4]) || kmsAlias.MatchString(m[4]) {
			return nil
		}
	}
	return errors.New("must be a KMS key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-…), an alias (alias/exports), or the ARN of a key or alias")
}

// MaxPrefixBytes bounds a key prefix, leaving room for file names within
// S3's 1,024-byte keys.
const MaxPrefixBytes = 900

// CheckKeyPrefix checks an S3 key prefix a customer sets: empty, or UTF-8
// without a leading slash, empty segments (`//`), `.` or `..` segments,
// control or bidirectional-override characters, at most MaxPrefixBytes.
// Such keys are legal in S3 but are read as paths by the tools that copy
// them out, where `..` climbs and `/` roots.
func CheckKeyPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPrefixBytes {
		return fmt.Errorf("must be at most %d bytes; got %d", MaxPrefixBytes, len(p))
	}
	return checkKeyText(p, true)
}

// CheckObjectKey checks a whole object key Sluice is about to write, with
// the same rules as CheckKeyPrefix, not empty and not ending in a slash.
func CheckObjectKey(k string) error {
	switch {
	case k == "":
		return errors.New("is empty")
	case len(k) > 1024:
		return fmt.Errorf("must be at most 1024 bytes; got %d", len(k))
	case strings.HasSuffix(k, "/"):
		return fmt.Errorf("%q ends in a slash, which names a folder, not a file", clip(k))
	}
	return checkKeyText(k, true)
}

// CheckPolicyPrefix checks a prefix that goes into an IAM policy the
// customer pastes: CheckKeyPrefix, and none of IAM's wildcards (`*`, `?`)
// or policy variables (`${...}`), which would widen what the policy grants.
func CheckPolicyPrefix(p string) error {
	if err := CheckKeyPrefix(p); err != nil {
		return err
	}
	if i := strings.IndexAny(p, "*?"); i >= 0 {
		return fmt.Errorf("must not contain %q: it is a wildcard in the IAM policy the prefix goes into", p[i:i+1])
	}
	if strings.Contains(p, "${") {
		return errors.New("must not contain \"${\": it starts a variable in the IAM policy the prefix goes into")
	}
	return nil
}

// checkKeyText applies the path rules to a key or prefix (a trailing slash
// allowed when trailingSlash).
func checkKeyText(k string, trailingSlash bool) error {
	if !utf8.ValidString(k) {
		return errors.New("must be valid UTF-8")
	}
	if strings.HasPrefix(k, "/") {
		return errors.New("must not start with a slash: S3 keys have no leading slash")
	}
	if r, ok := UnsafeRune(k); ok {
		return fmt.Errorf("must not contain the control or formatting character %U", r)
	}
	body := k
	if trailingSlash {
		body = strings.TrimSuffix(k, "/")
	}
	for _, seg := range strings.Split(body, "/") {
		switch seg {
		case "":
			return errors.New("must not contain an empty segment (`//`)")
		case ".", "..":
			return fmt.Errorf("must not contain a %q segment", seg)
		}
	}
	return nil
}

// UnsafeRune answers the first rune of s that is a control character (C0,
// DEL, C1), a bidirectional override or isolate, or a zero-width or BOM
// character: invisible characters that make a name read as something else.
func UnsafeRune(s string) (rune, bool) {
	for _, r := range s {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			return r, true
		case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0xfeff, r == 0x061c:
			return r, true
		}
	}
	return 0, false
}

// clip keeps echoed input short.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

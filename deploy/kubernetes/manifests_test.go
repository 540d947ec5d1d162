package kubernetes_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kvd-io/kvd/server"
)

// dataDir is where the image keeps kvd's data (its VOLUME).
const dataDir = "/var/lib/kvd"

// kustomization is the part of kustomization.yaml kvd uses; decoding is
// strict, so anything else in it fails the test until added here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// manifests is every object in deploy/kubernetes, decoded.
type manifests struct {
	kustomization kustomization
	files         []string // the manifests' file names, kustomization.yaml aside
	statefulSets  []*appsv1.StatefulSet
	services      []*corev1.Service
	pdbs          []*policyv1.PodDisruptionBudget
}

// load decodes every YAML document of every *.yaml file in this directory
// into its Kubernetes API type, strictly: an unknown or duplicate field, a
// kind this test does not know, or an apiVersion other than the kind's
// fails.
func load(t *testing.T) *manifests {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
			where := fmt.Sprintf("%s, document %d", path, i+1)
			if j, err := yaml.YAMLToJSON([]byte(doc)); err != nil {
				t.Fatalf("%s: %v", where, err)
			} else if string(j) == "null" {
				continue // comments only
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			var wantAPI string
			switch tm.Kind {
			case "Kustomization":
				obj, wantAPI = &m.kustomization, "kustomize.config.k8s.io/v1beta1"
			case "StatefulSet":
				s := &appsv1.StatefulSet{}
				m.statefulSets = append(m.statefulSets, s)
				obj, wantAPI = s, appsv1.SchemeGroupVersion.String()
			case "Service":
				s := &corev1.Service{}
				m.services = append(m.services, s)
				obj, wantAPI = s, corev1.SchemeGroupVersion.String()
			case "PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				m.pdbs = append(m.pdbs, p)
				obj, wantAPI = p, policyv1.SchemeGroupVersion.String()
			default:
				t.Fatalf("%s: kind %q: this test does not know it; teach it", where, tm.Kind)
			}
			if tm.APIVersion != wantAPI {
				t.Fatalf("%s: %s has apiVersion %q, want %q", where, tm.Kind, tm.APIVersion, wantAPI)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if tm.Kind != "Kustomization" {
				m.files = append(m.files, path)
			}
		}
	}
	return m
}

// member is the one StatefulSet and what the other objects hang on.
func (m *manifests) member(t *testing.T) (*appsv1.StatefulSet, *corev1.Container) {
	t.Helper()
	if len(m.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want 1", len(m.statefulSets))
	}
	sts := m.statefulSets[0]
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Name == "kvd" {
			return sts, c
		}
	}
	t.Fatalf("StatefulSet %s has no container named kvd", sts.Name)
	return nil, nil
}

func (m *manifests) service(t *testing.T, headless bool) *corev1.Service {
	t.Helper()
	var found []*corev1.Service
	for _, s := range m.services {
		if (s.Spec.ClusterIP == corev1.ClusterIPNone) == headless {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d Services with headless=%v, want 1", len(found), headless)
	}
	return found[0]
}

func podLabels(sts *appsv1.StatefulSet) labels.Set { return sts.Spec.Template.Labels }

func selects(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false // an empty selector selects everything: never what kvd wants
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(set)
}

// containerPort resolves a port by name or number to the container's port.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %s is not a port of container %s", p.String(), c.Name)
	return 0
}

func namedPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	return containerPort(t, c, intstr.FromString(name))
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	m := load(t)
	k := m.kustomization
	if k.Kind != "Kustomization" {
		t.Fatal("no kustomization.yaml")
	}
	files := slices.Compact(slices.Sorted(slices.Values(m.files)))
	resources := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(files, resources) {
		t.Fatalf("kustomization resources %q, want every manifest in the directory: %q", resources, files)
	}
}

func TestStatefulSet(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	spec := sts.Spec
	pod := spec.Template.Spec

	if spec.Replicas == nil || *spec.Replicas < 3 || *spec.Replicas%2 == 0 {
		t.Errorf("replicas %s: want an odd number, at least 3", show(spec.Replicas))
	}
	if !selects(t, spec.Selector, podLabels(sts)) {
		t.Errorf("selector %v does not select the pod template's labels %v", spec.Selector, podLabels(sts))
	}
	if headless := m.service(t, true); spec.ServiceName != headless.Name {
		t.Errorf("serviceName %q, want the headless Service %q (it gives members their DNS names)", spec.ServiceName, headless.Name)
	}
	if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: want Parallel; with OrderedReady the first member waits to be ready, which needs a leader, which needs a second member", spec.PodManagementPolicy)
	}
	if spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		t.Errorf("updateStrategy %q: want RollingUpdate (one member at a time, each once the previous is ready)", spec.UpdateStrategy.Type)
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p != nil && (p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType || p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType) {
		t.Errorf("persistentVolumeClaimRetentionPolicy %+v: volumes must outlive pods", *p)
	}

	grace := pod.TerminationGracePeriodSeconds
	shutdown := 10 * time.Second // kvd's default
	for _, e := range c.Env {
		if e.Name == "KVD_SHUTDOWN_TIMEOUT" {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("KVD_SHUTDOWN_TIMEOUT=%q: %v", e.Value, err)
			}
			shutdown = d
		}
	}
	if grace == nil || *grace < 30 || time.Duration(*grace)*time.Second < shutdown+15*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: want at least 30s and 15s more than the shutdown timeout %s, to drain and hand leadership over", show(grace), shutdown)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks must be false: the kvd and kvd-client Services would inject KVD_* variables, which kvd reads as flags")
	}

	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext: want runAsNonRoot")
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container securityContext: want readOnlyRootFilesystem and no privilege escalation")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("container: want cpu and memory requests")
	}

	hostname := false
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
		for _, term := range terms {
			if term.TopologyKey == corev1.LabelHostname && selects(t, term.LabelSelector, podLabels(sts)) {
				hostname = true
			}
		}
	}
	if !hostname {
		t.Errorf("no pod anti-affinity on %s selecting the members: two members on one node would lose quorum with it", corev1.LabelHostname)
	}
}

func TestProbes(t *testing.T) {
	m := load(t)
	_, c := m.member(t)
	httpPort := namedPort(t, c, "http")
	if _, port, _ := net.SplitHostPort(env(t, c, "KVD_HTTP_ADDR")); port != strconv.Itoa(int(httpPort)) {
		t.Fatalf("KVD_HTTP_ADDR port %s, container port http %d: the probes would miss", port, httpPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || containerPort(t, c, g.Port) != httpPort {
			t.Errorf("%s: GET %s on port %s, want %s on the http port %d", p.name, g.Path, g.Port.String(), p.path, httpPort)
		}
		if p.probe.TimeoutSeconds != 0 && p.probe.TimeoutSeconds < 2 {
			t.Errorf("%s: timeout %ds: /readyz may wait a second for the member to catch up", p.name, p.probe.TimeoutSeconds)
		}
	}
}

func TestServices(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	for _, s := range m.services {
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, podLabels(sts)) {
			t.Errorf("Service %s selects %v, not the members' labels %v", s.Name, s.Spec.Selector, podLabels(sts))
		}
		for _, p := range s.Spec.Ports {
			containerPort(t, c, p.TargetPort)
		}
	}
	headless := m.service(t, true)
	if !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless Service %s: want publishNotReadyAddresses, so founding members resolve each other before there is a leader", headless.Name)
	}
	if !servesPort(t, headless, c, "raft") || !servesPort(t, headless, c, "client") {
		t.Errorf("headless Service %s: want the raft and client ports", headless.Name)
	}
	client := m.service(t, false)
	if client.Spec.PublishNotReadyAddresses {
		t.Errorf("client Service %s must only send clients to ready members", client.Name)
	}
	if !servesPort(t, client, c, "client") {
		t.Errorf("client Service %s: want the client port", client.Name)
	}
}

func servesPort(t *testing.T, s *corev1.Service, c *corev1.Container, name string) bool {
	for _, p := range s.Spec.Ports {
		if containerPort(t, c, p.TargetPort) == namedPort(t, c, name) {
			return true
		}
	}
	return false
}

func TestDataVolume(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	if got := env(t, c, "KVD_DATA_DIR"); got != dataDir {
		t.Errorf("KVD_DATA_DIR=%q, want %s", got, dataDir)
	}
	var mounted string
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == dataDir {
			mounted = vm.Name
		}
	}
	if mounted == "" {
		t.Fatalf("nothing is mounted at %s", dataDir)
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == mounted {
			t.Fatalf("%s is the pod volume %q: it must be a volumeClaimTemplate, one per member", dataDir, mounted)
		}
	}
	for _, pvc := range sts.Spec.VolumeClaimTemplates {
		if pvc.Name != mounted {
			continue
		}
		if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOncePod) {
			t.Errorf("volumeClaimTemplate %s: access modes %v, want ReadWriteOnce", pvc.Name, pvc.Spec.AccessModes)
		}
		if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("1Gi")) < 0 {
			t.Errorf("volumeClaimTemplate %s: storage %s, want at least 1Gi", pvc.Name, q.String())
		}
		return
	}
	t.Fatalf("the volume mounted at %s (%q) is not a volumeClaimTemplate", dataDir, mounted)
}

func TestPodDisruptionBudget(t *testing.T) {
	m := load(t)
	sts, _ := m.member(t)
	if len(m.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	if !selects(t, pdb.Spec.Selector, podLabels(sts)) {
		t.Errorf("PodDisruptionBudget %s selects %v, not the members", pdb.Name, pdb.Spec.Selector)
	}
	if sts.Spec.Replicas == nil {
		t.Fatal("StatefulSet: replicas unset")
	}
	replicas := int(*sts.Spec.Replicas)
	quorum := replicas/2 + 1
	switch s := pdb.Spec; {
	case s.MaxUnavailable != nil && s.MinAvailable == nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(s.MaxUnavailable, replicas, false)
		if err != nil || n < 1 || replicas-n < quorum {
			t.Errorf("maxUnavailable %s: want 1 (allow one member down, keep a quorum)", s.MaxUnavailable.String())
		}
		if s.MaxUnavailable.Type == intstr.String {
			t.Errorf("maxUnavailable %s: a percentage would let more members go once the cluster is scaled", s.MaxUnavailable.String())
		}
	case s.MinAvailable != nil && s.MaxUnavailable == nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(s.MinAvailable, replicas, true)
		if err != nil || n < quorum || n > replicas-1 {
			t.Errorf("minAvailable %s: want a quorum (%d) and room for one member down", s.MinAvailable.String(), quorum)
		}
	default:
		t.Error("want exactly one of maxUnavailable and minAvailable")
	}
}

// TestBootstrapWiring expands the members' environment as the kubelet does,
// for each founding pod and for two more that scaling would add, and checks
// what kvd would make of it: the founding members are exactly the pods with
// the first ordinals, each advertising the address the others expect; later
// pods are not founders and join through the client Service; every member's
// settings validate.
func TestBootstrapWiring(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	headless, client := m.service(t, true), m.service(t, false)
	const ns = "team-a"
	if sts.Spec.Replicas == nil {
		t.Fatal("StatefulSet: replicas unset")
	}
	replicas := int(*sts.Spec.Replicas)
	podName := func(i int) string { return fmt.Sprintf("%s-%d", sts.Name, i) }
	advertised := func(i int, port string) string {
		return net.JoinHostPort(fmt.Sprintf("%s.%s.%s.svc", podName(i), headless.Name, ns), strconv.Itoa(int(namedPort(t, c, port))))
	}
	var founders []server.Peer
	for i := range replicas {
		founders = append(founders, server.Peer{Name: podName(i), RaftAddr: advertised(i, "raft")})
	}
	clientPort := client.Spec.Ports[0].Port
	wantJoin := net.JoinHostPort(fmt.Sprintf("%s.%s.svc", client.Name, ns), strconv.Itoa(int(clientPort)))

	for i := range replicas + 2 {
		t.Run(podName(i), func(t *testing.T) {
			e := expandEnv(t, c.Env, podName(i), ns)
			cfg := server.DefaultConfig()
			cfg.Name = e["KVD_NAME"]
			cfg.DataDir = e["KVD_DATA_DIR"]
			cfg.ClientAddr, cfg.RaftAddr, cfg.HTTPAddr = e["KVD_CLIENT_ADDR"], e["KVD_RAFT_ADDR"], e["KVD_HTTP_ADDR"]
			cfg.AdvertiseClientAddr, cfg.AdvertiseRaftAddr = e["KVD_ADVERTISE_CLIENT_ADDR"], e["KVD_ADVERTISE_RAFT_ADDR"]
			peers, err := server.ParseInitialCluster(e["KVD_INITIAL_CLUSTER"])
			if err != nil {
				t.Fatal(err)
			}
			cfg.InitialCluster = peers
			if j := e["KVD_JOIN"]; j != "" {
				cfg.Join = strings.Split(j, ",")
			}
			cfg.ClientTLS, cfg.PeerTLS = tlsConfigs(e)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("kvd would refuse these settings: %v", err)
			}

			if cfg.Name != podName(i) {
				t.Errorf("KVD_NAME=%q, want the pod name %q", cfg.Name, podName(i))
			}
			if cfg.AdvertiseClientAddr != advertised(i, "client") || cfg.AdvertiseRaftAddr != advertised(i, "raft") {
				t.Errorf("advertises %s and %s, want the headless Service names %s and %s",
					cfg.AdvertiseClientAddr, cfg.AdvertiseRaftAddr, advertised(i, "client"), advertised(i, "raft"))
			}
			if !slices.Equal(cfg.InitialCluster, founders) {
				t.Errorf("KVD_INITIAL_CLUSTER=%q, want exactly the %d founding pods at their advertised raft addresses: %v", e["KVD_INITIAL_CLUSTER"], replicas, founders)
			}
			founding := slices.ContainsFunc(cfg.InitialCluster, func(p server.Peer) bool { return p.Name == cfg.Name })
			if founding != (i < replicas) {
				t.Errorf("founding member: %v, want %v", founding, i < replicas)
			}
			if !slices.Equal(cfg.Join, []string{wantJoin}) {
				t.Errorf("KVD_JOIN=%q, want the client Service %s, through which later pods join", e["KVD_JOIN"], wantJoin)
			}
			for _, addr := range []string{cfg.ClientAddr, cfg.RaftAddr} {
				if host, _, _ := net.SplitHostPort(addr); host != "0.0.0.0" {
					t.Errorf("listens on %s: want 0.0.0.0, the pod's IP is not known in advance", addr)
				}
			}
		})
	}
}

// TestEnvironmentNamesFlags checks every KVD_* variable names a kvd flag:
// deploy/kvd.yaml names every flag (cmd/kvd's tests see to that).
func TestEnvironmentNamesFlags(t *testing.T) {
	m := load(t)
	_, c := m.member(t)
	example, err := os.ReadFile("../kvd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Env {
		flag, ok := strings.CutPrefix(e.Name, "KVD_")
		if !ok {
			continue
		}
		flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
		if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(flag) + `:`).Match(example) {
			t.Errorf("%s: kvd has no flag --%s (not in deploy/kvd.yaml)", e.Name, flag)
		}
	}
}

// TestImageMatchesManifests checks the StatefulSet against the Dockerfile:
// the user, the data volume and the ports.
func TestImageMatchesManifests(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	b, err := os.ReadFile("../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)\s*$`).FindStringSubmatch(df)
	if user == nil {
		t.Fatal("Dockerfile: no numeric USER uid:gid")
	}
	psc := sts.Spec.Template.Spec.SecurityContext
	for _, f := range []struct {
		name string
		got  *int64
		want string
	}{{"runAsUser", psc.RunAsUser, user[1]}, {"runAsGroup", psc.RunAsGroup, user[2]}, {"fsGroup", psc.FSGroup, user[2]}} {
		if f.got == nil || strconv.FormatInt(*f.got, 10) != f.want {
			t.Errorf("pod securityContext %s %s, want the image's %s", f.name, show(f.got), f.want)
		}
	}
	vol := regexp.MustCompile(`(?m)^VOLUME (\[.*\])\s*$`).FindStringSubmatch(df)
	var vols []string
	if vol == nil || json.Unmarshal([]byte(vol[1]), &vols) != nil || !slices.Equal(vols, []string{dataDir}) {
		t.Errorf("Dockerfile VOLUME %v, want [%q]", vol, dataDir)
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindStringSubmatch(df)
	if expose == nil {
		t.Fatal("Dockerfile: no EXPOSE")
	}
	for _, name := range []string{"client", "raft", "http"} {
		if p := strconv.Itoa(int(namedPort(t, c, name))); !slices.Contains(strings.Fields(expose[1]), p) {
			t.Errorf("container port %s (%s) is not exposed by the image (%s)", name, p, expose[1])
		}
	}
}

// expandEnv builds a container's environment as the kubelet does for pod
// name in namespace ns: fieldRefs for the pod's name and namespace, and
// $(VAR) references to variables defined earlier in the list.
func expandEnv(t *testing.T, vars []corev1.EnvVar, name, ns string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, v := range vars {
		switch {
		case v.ValueFrom == nil:
			env[v.Name] = expand(v.Value, env)
		case v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[v.Name] = name
		case v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[v.Name] = ns
		default:
			t.Fatalf("env %s: this test cannot resolve %+v", v.Name, v.ValueFrom)
		}
	}
	return env
}

// expand replaces $(VAR) with VAR's value when VAR is defined, leaves it
// as is otherwise, and turns $$ into $: Kubernetes' rules.
func expand(s string, env map[string]string) string {
	return regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

func env(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	t.Fatalf("container %s: %s is not set", c.Name, name)
	return ""
}

// show prints an optional number.
func show[T int32 | int64](p *T) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(int64(*p), 10)
}

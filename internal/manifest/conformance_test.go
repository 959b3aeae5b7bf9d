package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// verdict pins what pinhole makes of one conformance manifest: refused with
// exactly these errors (file:line:col: ... less the directory), or loaded
// with these network capabilities and this many warnings.
type verdict struct {
	refused  []string
	conns    []string // "kind canonical", file order; nil when absent
	tcp, udp []uint16
	flags    []string // network switches that are on
	daa      string
	warnings int
}

// conformance holds all 83 real manifests from Azure's sample and gallery
// repositories. Five hold placeholders a device must refuse; the rest load.
var conformance = map[string]verdict{
	"gallery__AzureEventGrid.json": {refused: []string{
		`8:33: error: Capabilities.AllowedConnections[0]: "<your_event_grid_mqtt_hostname>": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
	}},
	"gallery__AzureSphereSquirrel__HLCore.json":            {conns: []string{"host eoz525w4wyveqd6.m.pipedream.net", "host eo5p7ama7juiwyp.m.pipedream.net"}, flags: []string{"SystemTime"}, warnings: 0},
	"gallery__BalancingRobot__Software__HighLevelApp.json": {conns: []string{"ipv4 255.255.255.255", "host global.azure-devices-provisioning.net"}, udp: []uint16{1825}, flags: []string{"SystemTime"}, daa: "00000000-0000-0000-0000-000000000000", warnings: 1},
	"gallery__BalancingRobot__Software__RTOS.json":         {warnings: 0},
	"gallery__CO2_MonitorHealthySpaces__src.json": {refused: []string{
		`17:7: error: Capabilities.AllowedConnections[1]: "REPLACE_WITH_YOUR_AZURE_IOT_HUB_OR_IOT_CENTRAL_URLS": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
		`19:29: error: Capabilities.DeviceAuthentication: "REPLACE_WITH_YOUR_AZURE_SPHERE_TENANT_ID": looks like a placeholder left from a sample: put your Azure Sphere tenant ID here (Azure Sphere error 2097176)`,
	}},
	"gallery__DNSServiceDiscoveryUnicast.json":                  {conns: []string{"dns-sd _http._tcp.home"}, flags: []string{"NetworkConfig"}, warnings: 0},
	"gallery__DRAMClickboard__DRAMClickboard_HighLevelApp.json": {warnings: 0},
	"gallery__EAP-TLS_Solution__EAP-TLS__Client.json":           {conns: []string{"host global.azure-devices-provisioning.net", "host azurecattenant.deviceauthority.com", "host stage.deviceauthority.com", "ipv4 51.140.152.91", "ipv4 40.69.64.232", "ipv4 192.168.0.2", "ipv4 192.168.1.200"}, flags: []string{"NetworkConfig", "TimeSyncConfig", "WifiConfig", "EnterpriseWifiConfig", "CertStore"}, daa: "52fecdd6-5a57-4cd2-bea1-ec7fa1773c43", warnings: 0},
	"gallery__EncryptedStorage.json":                            {warnings: 0},
	"gallery__Grove_16x2_RGB_LCD__src.json":                     {warnings: 0},
	"gallery__HTTPS_MutualAuth__Azsphere.json": {refused: []string{
		`8:29: error: Capabilities.AllowedConnections[0]: "CHANGE THIS": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
	}},
	"gallery__HeapTracker.json":                                            {warnings: 0},
	"gallery__IndustrialDeviceController__Software__HighLevelApp.json":     {conns: []string{"host global.azure-devices-provisioning.net"}, flags: []string{"NetworkConfig", "WifiConfig"}, daa: "00000000-0000-0000-0000-000000000000", warnings: 1},
	"gallery__IndustrialDeviceController__Software__MT3620_IDC_RTApp.json": {warnings: 0},
	"gallery__LittleFs_Encrypted_RemoteDisk__src__HighLevelApp.json": {refused: []string{
		`8:29: error: Capabilities.AllowedConnections[0]: "": empty entry: put the host name or IPv4 address the app connects to here, or remove the entry (Azure Sphere error 2097161 ConnectionsParseError)`,
	}},
	"gallery__LittleFs_RemoteDisk__src__HighLevelApp.json":                                {conns: []string{}, warnings: 0},
	"gallery__LittleFs_SDCard__src__AzureSphere__SDCard_HighLevelApp.json":                {warnings: 0},
	"gallery__LittleFs_SDCard__src__AzureSphere__SDCard_RealTimeApp.json":                 {warnings: 0},
	"gallery__MQTT-C_Client__src__HighLevelApp.json":                                      {conns: []string{"host test.mosquitto.org"}, warnings: 0},
	"gallery__NativeBlink.json":                                                           {warnings: 0},
	"gallery__NetworkInterfaceAddresses.json":                                             {warnings: 0},
	"gallery__OSNetworkRequirementChecker-HLApp__src.json":                                {conns: []string{"host anse.azurewatson.microsoft.com", "host eastus-prod-azuresphere.azure-devices.net", "host global.azure-devices-provisioning.net", "host prod.core.sphere.azure.net", "host prod.device.core.sphere.azure.net", "host prod.deviceauth.sphere.azure.net", "host prod.dinsights.core.sphere.azure.net", "host prod.releases.sphere.azure.net", "host prod.time.sphere.azure.net", "host prod.update.sphere.azure.net", "host prodmsimg.blob.core.windows.net", "host prodmsimg-secondary.blob.core.windows.net", "host prodptimg.blob.core.windows.net", "host prodptimg-secondary.blob.core.windows.net", "host sphereblobeus.azurewatson.microsoft.com", "host sphereblobweus.azurewatson.microsoft.com", "host sphere.sb.dl.delivery.mp.microsoft.com", "host time.sphere.azure.net", "host www.msftconnecttest.com"}, flags: []string{"NetworkConfig", "TimeSyncConfig"}, warnings: 0},
	"gallery__PWMAudio.json":                                                              {warnings: 0},
	"gallery__RS485Driver__HLApp.json":                                                    {warnings: 1},
	"gallery__RS485Driver__RTApp.json":                                                    {warnings: 0},
	"gallery__Rust__rust__samples__ADC__adc_high_level_app.json":                          {warnings: 0},
	"gallery__Rust__rust__samples__CertStore__cert_store_high_level_app.json":             {flags: []string{"WifiConfig", "CertStore"}, warnings: 0},
	"gallery__Rust__rust__samples__CustomNTP__custom_ntp_high_level_app.json":             {flags: []string{"NetworkConfig", "TimeSyncConfig"}, warnings: 0},
	"gallery__Rust__rust__samples__DHCP.json":                                             {flags: []string{"NetworkConfig"}, warnings: 0},
	"gallery__Rust__rust__samples__GPIO__gpio_high_level_app.json":                        {warnings: 0},
	"gallery__Rust__rust__samples__HelloWorld__hello_world_high_level_app.json":           {warnings: 0},
	"gallery__Rust__rust__samples__allapis.json":                                          {conns: []string{"host example.com"}, warnings: 0},
	"gallery__SetTimeFromLocation__src.json":                                              {conns: []string{"host api.timezonedb.com", "host get.geojs.io"}, flags: []string{"SystemTime"}, warnings: 0},
	"gallery__SimpleFileSystem_RemoteDisk__src__HighLevelApp.json":                        {conns: []string{"ipv4 192.168.0.107"}, warnings: 0},
	"gallery__TranslatorCognitiveServices__src.json":                                      {conns: []string{"host api.cognitive.microsoft.com", "host api.cognitive.microsofttranslator.com", "host westus.api.cognitive.microsoft.com"}, warnings: 0},
	"gallery__UdpDebugLog__src__SphereUdpLogSender.json":                                  {conns: []string{"ipv4 255.255.255.255"}, udp: []uint16{1824}, warnings: 0},
	"gallery__VS1053AudioStreaming__src.json":                                             {conns: []string{"host 17853.live.streamtheworld.com"}, warnings: 0},
	"gallery__WiFiConfigurationViaNfc__src.json":                                          {flags: []string{"WifiConfig"}, warnings: 0},
	"gallery__WifiConfigurationViaAppResource__src.json":                                  {conns: []string{}, flags: []string{"WifiConfig"}, warnings: 0},
	"gallery__WifiConfigurationViaUart__src.json":                                         {conns: []string{}, flags: []string{"WifiConfig"}, warnings: 0},
	"samples__CodeSnippets__DeviceId.json":                                                {daa: "00000000-0000-0000-0000-000000000000", warnings: 6},
	"samples__CodeSnippets__Networking__AutomaticDns.json":                                {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__CustomDns.json":                                   {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__DynamicIp.json":                                   {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__Proxy__EnableDisableProxy.json":                   {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__Proxy__GetProxySettings.json":                     {flags: []string{"ReadNetworkProxyConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__Proxy__SetProxySettings.json":                     {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Networking__StaticIp.json":                                    {flags: []string{"NetworkConfig"}, warnings: 5},
	"samples__CodeSnippets__Peripherals__ADC__AdvancedFunctions.json":                     {warnings: 5},
	"samples__CodeSnippets__Peripherals__ADC__SimplifiedFunctions.json":                   {warnings: 5},
	"samples__Samples__ADC__ADC_HighLevelApp.json":                                        {warnings: 0},
	"samples__Samples__AzureIoT.json":                                                     {conns: []string{}, daa: "00000000-0000-0000-0000-000000000000", warnings: 1},
	"samples__Samples__Certificates__Cert_HighLevelApp.json":                              {flags: []string{"WifiConfig", "CertStore"}, warnings: 0},
	"samples__Samples__CustomNTP__CustomNTP_HighLevelApp.json":                            {flags: []string{"NetworkConfig", "TimeSyncConfig"}, warnings: 0},
	"samples__Samples__DHCP.json":                                                         {flags: []string{"NetworkConfig"}, warnings: 0},
	"samples__Samples__DNSServiceDiscovery.json":                                          {conns: []string{"dns-sd _sample-service._tcp.local"}, warnings: 0},
	"samples__Samples__DeferredUpdate__DeferredUpdate_HighLevelApp.json":                  {warnings: 0},
	"samples__Samples__DeviceToCloud__ExternalMcuLowPower__AzureSphere_HighLevelApp.json": {conns: []string{"host global.azure-devices-provisioning.net"}, daa: "00000000-0000-0000-0000-000000000000", warnings: 1},
	"samples__Samples__ExternalMcuUpdate__AzureSphere_HighLevelApp.json":                  {warnings: 0},
	"samples__Samples__GPIO__GPIO_HighLevelApp.json":                                      {warnings: 0},
	"samples__Samples__HTTPS__HTTPS_Curl_Easy.json":                                       {conns: []string{"host example.com"}, flags: []string{"ReadNetworkProxyConfig"}, warnings: 0},
	"samples__Samples__HTTPS__HTTPS_Curl_Multi.json":                                      {conns: []string{"host httpstat.us"}, flags: []string{"ReadNetworkProxyConfig"}, warnings: 0},
	"samples__Samples__HelloWorld__HelloWorld_HighLevelApp.json":                          {warnings: 0},
	"samples__Samples__HelloWorld__HelloWorld_RTApp_MT3620_BareMetal.json":                {warnings: 0},
	"samples__Samples__I2C__I2C_LSM6DS3_HighLevelApp.json":                                {warnings: 0},
	"samples__Samples__IntercoreComms__IntercoreComms_HighLevelApp.json":                  {warnings: 0},
	"samples__Samples__IntercoreComms__IntercoreComms_RTApp_MT3620_BareMetal.json":        {warnings: 0},
	"samples__Samples__Iperf.json": {refused: []string{
		`20:7: error: Capabilities.AllowedConnections[0]: "<IPERF SERVER IP ADDRESS>": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
	}},
	"samples__Samples__LoggingToAzure.json":                                            {conns: []string{"host yourhostname.azure-devices.net"}, daa: "00000000-0000-0000-0000-000000000000", warnings: 2},
	"samples__Samples__MutableStorage.json":                                            {warnings: 0},
	"samples__Samples__PWM__PWM_HighLevelApp.json":                                     {conns: []string{}, warnings: 0},
	"samples__Samples__Powerdown__Powerdown_HighLevelApp.json":                         {warnings: 0},
	"samples__Samples__PrivateNetworkServices.json":                                    {tcp: []uint16{11000}, flags: []string{"NetworkConfig", "SntpService", "DhcpService"}, warnings: 0},
	"samples__Samples__SPI__SPI_LSM6DS3_HighLevelApp.json":                             {warnings: 0},
	"samples__Samples__SystemTime.json":                                                {flags: []string{"SystemTime"}, warnings: 0},
	"samples__Samples__UART__UART_HighLevelApp.json":                                   {warnings: 0},
	"samples__Samples__WiFi__WiFi_HighLevelApp.json":                                   {flags: []string{"WifiConfig"}, warnings: 0},
	"samples__Samples__WifiSetupAndDeviceControlViaBle__AzureSphere_HighLevelApp.json": {flags: []string{"WifiConfig"}, warnings: 0},
	"samples__Samples__WolfSSL__WolfSSL_HighLevelApp.json":                             {conns: []string{"host example.com"}, warnings: 0},
	"samples__Tutorials__ErrorReporting__Stage1.json":                                  {warnings: 0},
	"samples__Tutorials__ErrorReporting__Stage2.json":                                  {warnings: 0},
	"samples__Tutorials__MemoryUsage__Stage1.json":                                     {warnings: 0},
	"samples__Tutorials__MemoryUsage__Stage2.json":                                     {warnings: 0},
}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob("testdata/conformance/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 83 {
		t.Errorf("found %d conformance manifests, want 83", len(files))
	}
	seen := make(map[string]bool)
	loaded, refused := 0, 0
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			want, ok := conformance[name]
			if !ok {
				t.Fatalf("%s has no pinned verdict; add one to the conformance table", name)
			}
			m, diags, err := Load(path)
			if want.refused != nil {
				refused++
				if err == nil || m != nil {
					t.Fatalf("Load(%s) loaded; want it refused", name)
				}
				var got []string
				for _, d := range diags {
					if d.Severity != Error {
						continue
					}
					s := d.String()
					if !strings.HasPrefix(s, path+":") {
						t.Errorf("diagnostic %q does not start with the file name %s", s, path)
					}
					got = append(got, strings.TrimPrefix(s, path+":"))
				}
				if diff := cmp.Diff(want.refused, got); diff != "" {
					t.Errorf("errors mismatch (-want +got):\n%s", diff)
				}
				return
			}
			loaded++
			if err != nil {
				t.Fatalf("Load(%s) = %v; want it loaded", name, err)
			}
			c := m.Capabilities
			var conns []string
			if c.AllowedConnections != nil {
				conns = []string{}
			}
			for _, conn := range c.AllowedConnections {
				conns = append(conns, conn.Kind.String()+" "+conn.String())
			}
			on := map[string]bool{
				"NetworkConfig": c.NetworkConfig, "ReadNetworkProxyConfig": c.ReadNetworkProxyConfig, "TimeSyncConfig": c.TimeSyncConfig,
				"SystemTime": c.SystemTime, "SntpService": c.SntpService, "DhcpService": c.DhcpService,
				"HardwareAddressConfig": c.HardwareAddressConfig, "WifiConfig": c.WifiConfig,
				"EnterpriseWifiConfig": c.EnterpriseWifiConfig, "CertStore": c.CertStore,
			}
			var flags []string
			for _, f := range []string{"NetworkConfig", "ReadNetworkProxyConfig", "TimeSyncConfig", "SystemTime", "SntpService",
				"DhcpService", "HardwareAddressConfig", "WifiConfig", "EnterpriseWifiConfig", "CertStore"} {
				if on[f] {
					flags = append(flags, f)
				}
			}
			_, warnings := Count(diags)
			got := verdict{conns: conns, tcp: c.AllowedTCPServerPorts, udp: c.AllowedUDPServerPorts, flags: flags,
				daa: c.DeviceAuthentication, warnings: warnings}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(verdict{})); diff != "" {
				t.Errorf("Load(%s) mismatch (-want +got):\n%s", name, diff)
			}
			crossCheck(t, path, m)
		})
	}
	for name := range conformance {
		if !seen[name] {
			t.Errorf("pinned verdict for %s, which is not in testdata/conformance", name)
		}
	}
	t.Logf("%d loaded, %d refused", loaded, refused)
}

// crossCheck compares the loaded network capabilities with what
// encoding/json reads from the same file, so the pinned table cannot bless
// a parser bug by itself.
func crossCheck(t *testing.T, path string, m *Manifest) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Capabilities struct {
			AllowedConnections     []string
			AllowedTcpServerPorts  []uint16
			AllowedUdpServerPorts  []uint16
			NetworkConfig          bool
			ReadNetworkProxyConfig bool
			TimeSyncConfig         bool
			SystemTime             bool
			SntpService            bool
			DhcpService            bool
			DeviceAuthentication   string
		}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	rc, c := raw.Capabilities, m.Capabilities
	var entries []string
	for _, conn := range c.AllowedConnections {
		entries = append(entries, conn.Raw)
		if !slices.Contains([]ConnKind{ConnHost, ConnIPv4, ConnService}, conn.Kind) {
			t.Errorf("%s: entry %q is %v, which no conformance manifest uses", path, conn.Raw, conn.Kind)
		}
		if _, ext := conn.Extension(); ext {
			t.Errorf("%s: entry %q counts as a pinhole extension", path, conn.Raw)
		}
	}
	type net struct {
		Conns                        []string
		TCP, UDP                     []uint16
		NetCfg, Proxy, Time, SysTime bool
		Sntp, Dhcp                   bool
		DAA                          string
	}
	want := net{rc.AllowedConnections, rc.AllowedTcpServerPorts, rc.AllowedUdpServerPorts, rc.NetworkConfig, rc.ReadNetworkProxyConfig,
		rc.TimeSyncConfig, rc.SystemTime, rc.SntpService, rc.DhcpService, rc.DeviceAuthentication}
	got := net{entries, c.AllowedTCPServerPorts, c.AllowedUDPServerPorts, c.NetworkConfig, c.ReadNetworkProxyConfig,
		c.TimeSyncConfig, c.SystemTime, c.SntpService, c.DhcpService, c.DeviceAuthentication}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: network capabilities differ from encoding/json's reading (-json +pinhole):\n%s", path, diff)
	}
}

package measure

// Event types (TCG PC Client Platform Firmware Profile), named as
// go-attestation's attest.EventType.String names them.
const (
	EvNoAction                     = "EV_NO_ACTION"
	EvSeparator                    = "EV_SEPARATOR"
	EvIPL                          = "EV_IPL"
	EvEFIVariableDriverConfig      = "EV_EFI_VARIABLE_DRIVER_CONFIG"
	EvEFIBootServicesApplication   = "EV_EFI_BOOT_SERVICES_APPLICATION"
	EvEFIAction                    = "EV_EFI_ACTION"
	EvEFIVariableAuthority         = "EV_EFI_VARIABLE_AUTHORITY"
	callingEFIApplicationFromBoot  = "Calling EFI Application from Boot Option"
	separatorDescription           = "separator (00000000)"
	bootServicesApplicationPrefix  = "EFI application, Authenticode sha256"
	variableDriverConfigDescPrefix = "Secure Boot variable"
)

// Event is one predicted measurement: the PCR it extends, its event type and
// the sha256 digest extended. Description says what was measured, for people;
// it is not compared.
type Event struct {
	PCR         int    `json:"pcr"`
	Type        string `json:"type"`
	Digest      Digest `json:"digest"`
	Description string `json:"description"`
}

// separator is the EV_SEPARATOR event the firmware writes into pcr before
// handing over to the boot loader: data is 4 zero bytes, digest their sha256.
func separator(pcr int) Event {
	return Event{PCR: pcr, Type: EvSeparator, Digest: sum([]byte{0, 0, 0, 0}), Description: separatorDescription}
}

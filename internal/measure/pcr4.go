package measure

import "fmt"

// PCRBootLoaderCode is PCR 4, where the firmware measures the EFI applications
// it loads.
const PCRBootLoaderCode = 4

// PredictPCR4 returns the PCR 4 events of a boot in which the firmware starts
// the first boot option and then loads, in order, the EFI applications whose
// Authenticode sha256 digests are given: for kubedos systemd-boot, then the
// UKI. The systemd-stub 252 kernel handover adds no event, so the kernel is
// not listed.
//
// A failed earlier boot option (for example network boot) would add events
// before these: the boot order must make the disk boot first.
func PredictPCR4(apps ...[]byte) ([]Event, error) {
	if len(apps) == 0 {
		return nil, fmt.Errorf("%w: PCR 4: no EFI application digests", ErrInput)
	}
	events := []Event{
		{PCR: PCRBootLoaderCode, Type: EvEFIAction, Digest: sum([]byte(callingEFIApplicationFromBoot)), Description: callingEFIApplicationFromBoot},
		separator(PCRBootLoaderCode),
	}
	for i, d := range apps {
		what := fmt.Sprintf("PCR 4: EFI application %d Authenticode digest", i)
		if err := checkDigest(what, d); err != nil {
			return nil, err
		}
		events = append(events, Event{
			PCR:         PCRBootLoaderCode,
			Type:        EvEFIBootServicesApplication,
			Digest:      Digest(append([]byte(nil), d...)),
			Description: fmt.Sprintf("%s (image %d in load order)", bootServicesApplicationPrefix, i),
		})
	}
	return events, nil
}

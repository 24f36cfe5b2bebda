package xen

import "encoding/json"

// Config is what ckptfs reads of the libxl JSON domain config an xl save
// stream carries (Handler.Config): the guest's identity and size.
type Config struct {
	Name     string // c_info.name
	UUID     string // c_info.uuid: the guest's lineage
	Type     string // c_info.type: "pv", "hvm", "pvh"
	MaxMemKB int64  // b_info.max_memkb
	MaxVCPUs int    // b_info.max_vcpus
}

// ParseConfig decodes the fields of Config from the JSON config. Fields
// absent from it stay zero; JSON that does not parse is an error.
func ParseConfig(j []byte) (Config, error) {
	var raw struct {
		CInfo struct{ Name, UUID, Type string } `json:"c_info"`
		BInfo struct {
			MaxMemKB int64 `json:"max_memkb"`
			MaxVCPUs int   `json:"max_vcpus"`
		} `json:"b_info"`
	}
	if err := json.Unmarshal(j, &raw); err != nil {
		return Config{}, err
	}
	return Config{raw.CInfo.Name, raw.CInfo.UUID, raw.CInfo.Type, raw.BInfo.MaxMemKB, raw.BInfo.MaxVCPUs}, nil
}

// GuestUUID reads the guest's UUID (c_info.uuid) from the start of an xl
// save stream, prefix. decided is false while prefix is too short to
// tell; uuid is "" for a stream that is not an xl save image or whose
// config names no UUID (the config comes before the libxc stream).
func GuestUUID(prefix []byte) (uuid string, decided bool) {
	sc := NewScanner(Handler{
		Config: func(j []byte) {
			if cfg, err := ParseConfig(j); err == nil {
				uuid = cfg.UUID
			}
			decided = true
		},
		LibxcHdr: func(DomainHeader) { decided = true },
	})
	sc.Write(prefix)
	return uuid, decided || sc.Err() != nil
}

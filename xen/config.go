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

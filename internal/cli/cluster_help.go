package cli

// The long help of cluster up and deploy: what they make, where.

const clusterUpLong = `Bring the cluster of SPEC up on the local QEMU target from a build:

  LAN     networking.lan as one L2 segment: a bridge inside the network
          namespace kubedos-<cluster>, joined to this host by a veth pair
          whose host end carries networking.lan.gateway; the host does not
          forward, so the nodes reach only each other and the gateway
  hub     kubedos hub serve on <gateway>:7443, state in <state>/hub, until
          the master has enrolled with it; then (--hub-on master, the
          default) the hub is handed to the master's kubedosd over its node
          API: state, spec, signed manifest and the CA key, which the master
          seals to its TPM (PCR 7). The master serves the hub on
          <its address>:7443 from then on, across reboots and upgrades, and
          no hub runs on this host; the workers name the master's hub from
          their first boot. --hub-on host keeps the hub on the gateway.
  nodes   one VM per spec node: q35 under TCG, OVMF with the platform's keys and
          Secure Boot enforced, its own swtpm TPM 2.0 (state kept), a
          copy-on-write disk over the role's image, SMBIOS naming the node,
          its hub and its LAN address (topology.nodes[].address), one NIC on
          a tap on the bridge; node API on <address>:7444; serial console in
          <state>/nodes/<name>/serial.log
  EKs     each VM's EK is read before it boots and registered with the hub,
          so only that machine can enroll under its name

Running it again changes nothing: running VMs and the hub are left alone;
once the master keeps the hub, it is started first and the others once
its hub answers.
A node whose disk belongs to another build is only recreated when the spec
sets destructive.recreateVMs. A LAN that overlaps a network the host has
is refused. Needs root (network namespace, swtpm, qemu).`

const deployProxmoxLong = `

With targets.default proxmox (or --target proxmox), deploy makes one VM per
spec node on the Proxmox VE node targets.proxmox.node through its API, with
the API token in targets.proxmox.tokenFile (USER@REALM!TOKENID=SECRET, a
file private to its owner) and, when set, the API certificate pinned by
targets.proxmox.fingerprint. Needs Proxmox VE 8.4 or later.

  images  each role's qcow2 disk and the OVMF variable store with the
          platform's Secure Boot keys are uploaded once to
          targets.proxmox.importStorage (default local) as import volumes
          named by their SHA-256, which Proxmox checks on upload
  TPM     each new VM gets a TPM 2.0 made here (swtpm's single-file state,
          EK certificate from swtpm's local CA); its EK is registered with
          the hub at --hub before the VM exists, then the state is removed
          here and from the import storage once the VM holds its copy
  VMs     q35, OVMF with those variables (no Microsoft keys), tpmstate0
          v2.0, virtio disk imported from the role's image, NIC on
          targets.proxmox.bridge, serial console, started at once and on
          host boot; name, hub, LAN address and gateway in SMBIOS type 1
          (SKU), as Proxmox VE sets no OEM strings; tags kubedos and
          kubedos-<cluster>; the description records the image
  hub     without --hub-on, not started here: run kubedos hub serve with
          the spec and the build where the VMs reach it, and name that
          address with --hub. With --hub-on host this host serves it on
          --hub (an address of this host the VMs reach); with --hub-on
          master it does so until the master enrolls, then hands it to the
          master as on qemu (the workers look for it on the master from
          their first boot; later deploys register with the master)

Running it again changes nothing. A VMID held by a VM kubedos did not make
for that node is refused; a node's VM that holds another image is destroyed
and recreated (with a new TPM) only with destructive.recreateVMs.
--timeout 0 returns once the VMs run, without waiting for enrollment.
Afterwards kubedos cluster status shows the VMs with their guest agent,
kubedos cluster down stops them (destroys them only with
destructive.destroyVMs) and a hub this host serves, and kubedos node fence
--spec stops one.`

const clusterStatusLong = `Show the cluster of SPEC: each node's VM and what its hub says of it.

On the local QEMU target: the LAN, the hub (on this host, or the master
keeping it), and per node its VM (running or stopped, with its qemu pid),
the hub's state and build, its node API and its serial console.

On proxmox (targets.default proxmox, or --target proxmox): each VM as the
Proxmox VE API reports it (running, stopped, absent, or foreign when its
VMID is held by a guest kubedos did not make for that node), and what the
QEMU guest agent inside it says (agent up, not running, or off when the VM
is stopped) with the guest's own addresses: a node's state before it has
a network, or without any path to it from here. The hub is asked at --hub,
else at the --hub of the last deploy (kept in the state directory); it runs
elsewhere, so one not answering is reported, not a failure.`

const clusterDownLong = `Take the cluster of SPEC down.

On the local QEMU target: every VM and its swtpm stop, the hub running on
this host stops, and the LAN namespace goes with its taps and veth.
--purge also deletes the state directory: TPM state, disks and hub state.

On proxmox (targets.default proxmox, or --target proxmox): every VM kubedos
made for a spec node is stopped at once through the API (a power cut, not a
guest shutdown) and kept, with its disks and TPM state. Only when the spec
sets destructive.destroyVMs are the VMs destroyed instead, with their
disks, EFI variables and TPM state: the nodes' identities are gone, and a
later deploy makes new TPMs whose EKs are registered again. A VMID held by
anything kubedos did not make for that node is left alone and named in the
error. The hub (kubedos hub serve, at --hub) and the bridge are not
kubedos's there and are left running; --purge deletes only the local state
directory. The output lists each node's VM: stopped, destroyed or absent
(--output json: the same as a list).`

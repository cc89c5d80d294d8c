#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_plan
short_description: Size the Ray cluster, the model's replicas and vLLM's parallelism from the cluster's facts
description:
  - Decides how many replicas of one model to serve with vLLM over Ray, each replica's tensor parallelism (TP) and
    pipeline parallelism (PP), and the Ray layout; proves that weights, runtime overhead and the KV cache for at
    least one O(max_model_len) sequence fit every GPU, and explains each decision in RV(reasons).
  - A replica is the fewest GPUs that hold the weights and the KV cache of O(target_concurrency) full
    O(max_model_len) sequences at once, inside one node with TP where a node holds it, else over whole nodes with PP
    across them. As many replicas run as the GPUs hold (the cluster is dedicated to the model), or O(replicas), or
    Ray Serve autoscales them between O(min_replicas) and O(max_replicas); O(max_gpus) or O(gpu_share) caps the
    GPUs. GPUs left over beside the replicas make each replica larger when a larger one keeps their number, else
    they stay idle with a warning.
  - When no replica holds O(target_concurrency) sequences (for example the model's own long context on few GPUs),
    one instance serves over every GPU instead, with O(max_model_len) lowered to what fits when it was not given.
  - Keeps TP inside a node and spreads layers across nodes with PP; TP across nodes only with
    O(allow_cross_node_tp=true), with a warning about the network.
  - Validates O(tensor_parallel_size) and O(pipeline_parallel_size) when given (TP divides the attention heads, the
    KV heads divide by TP or TP is a multiple of them, PP is at most the number of layers) and chooses them when not;
    given, they fix the shape of every replica.
  - Fails, naming the smallest cluster of the same GPUs that would fit, when the model does not fit.
  - The first node is the Ray head. On O(platform=kubernetes) the head is a pod; the worker group never counts it
    again (the C(numOfHosts) and C(replicas) pitfall).
  - Nodes without GPUs make a CPU plan, whose KV cache is C(VLLM_CPU_KVCACHE_SPACE) GiB rather than a share of
    O(gpu_memory_utilization); O(device=cpu) makes one on nodes with GPUs too, and O(device=gpu) refuses nodes
    without any.
  - On O(platform=kubernetes) a user's O(kuberay_layout) replaces the planned KubeRay layout once it is checked
    against the plan's TP and PP and the nodes' GPUs.
  - Error messages and RV(reasons) name options as O(option_names) says, so a playbook can have them name the
    variables its users set.
  - Pure computation from its options and the model files; it contacts no cluster and changes nothing.
version_added: 0.1.0
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
options:
  nodes:
    description:
      - One entry per node that may run Ray, from the C(cuda_check) facts of each host or the Kubernetes nodes'
        labels and allocatable. The first entry is the Ray head.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Host or Kubernetes node name.
        type: str
        required: true
      gpus:
        description: Number of GPUs on the node; V(0) for a CPU-only node.
        type: int
        default: 0
      gpu_memory_mib:
        description:
          - Memory of one GPU in MiB as C(nvidia-smi --query-gpu=memory.total) reports it, for example V(81920)
            for an A100-80GB, V(81559) for an H100-80GB, V(143771) for an H200. Required when O(nodes[].gpus) is
            above 0.
        type: int
      gpu_product:
        description: GPU product name, shown in the plan and in failure messages.
        type: str
      cpus:
        description: Allocatable CPUs of the node; reported for sizing the KubeRay worker pods.
        type: float
      memory_mib:
        description: Allocatable memory of the node in MiB; sizes the CPU KV cache and checks CPU plans.
        type: int
  model_path:
    description:
      - Directory with the model's C(config.json) and its C(*.safetensors) files or C(model.safetensors.index.json).
        The exact weight bytes are read from the safetensors headers, or from the index's C(metadata.total_size)
        when shards are missing.
      - Mutually exclusive with O(model_config).
    type: path
  model_config:
    description:
      - The model's C(config.json) as a dict, when the weights are not on disk yet. Needs O(model_params_b).
      - Mutually exclusive with O(model_path).
    type: dict
  model_params_b:
    description:
      - Parameter count in billions, used with O(model_config) to estimate the weight bytes.
    type: float
  model_name:
    description:
      - Name shown in the plan. Defaults to the config's C(_name_or_path) or the directory name of O(model_path).
    type: str
  dtype:
    description:
      - Data type vLLM serves with. V(auto) follows the checkpoint (a float32 checkpoint is served as bfloat16 on
        GPUs, as vLLM does). V(fp8) quantizes the linear layers of an unquantized checkpoint to FP8 when loading
        (vLLM C(--quantization fp8)); a checkpoint quantized already (C(quantization_config)) keeps its own format.
    type: str
    choices: [auto, bfloat16, float16, float32, fp8]
    default: auto
  kv_cache_dtype:
    description:
      - Data type of the KV cache (vLLM C(--kv-cache-dtype)); V(auto) uses the serving dtype. vLLM 0.32 has no
        float32 KV cache.
    type: str
    choices: [auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2]
    default: auto
  max_model_len:
    description:
      - Tokens per sequence (prompt plus output). The KV cache must hold at least one such sequence, and a replica
        O(target_concurrency) of them.
      - When unset, the model's C(max_position_embeddings) is used; when no replica holds O(target_concurrency) such
        sequences, one instance over every GPU serves with it lowered, with a warning, to what the KV cache holds.
    type: int
  gpu_memory_utilization:
    description:
      - Fraction of each GPU's memory vLLM may use (its C(--gpu-memory-utilization)).
    type: float
    default: 0.9
  tensor_parallel_size:
    description:
      - TP size of each replica, validated; chosen by the planner when unset.
    type: int
  pipeline_parallel_size:
    description:
      - PP size of each replica, validated; chosen by the planner when unset.
    type: int
  platform:
    description:
      - Where Ray runs. V(kubernetes) returns the KubeRay layout in RV(ray_layout.kuberay), V(hosts) the head and
        worker list in RV(ray_layout.hosts).
    type: str
    choices: [kubernetes, hosts]
    required: true
  head_gpus:
    description:
      - Whether, or how many of its GPUs, the Ray head (the first node) carries for serving. V(true), V(false) or a
        GPU count.
      - Default V(true) for O(platform=hosts), where the head is a host that registers its GPUs with Ray, and
        V(false) for O(platform=kubernetes), where the head is a pod without a GPU request that schedules beside a
        worker pod, so every node's GPUs still serve through the worker group.
    type: raw
  max_gpus:
    description:
      - Use at most this many GPUs, over all replicas. Unset means every GPU offered.
      - Mutually exclusive with O(gpu_share).
    type: int
  gpu_share:
    description:
      - The share of the offered (usable) GPUs the plan may use, above 0 and at most 1, for example V(0.5) to leave
        half of the cluster to other work. Rounded down to whole GPUs; it must leave at least one.
      - Mutually exclusive with O(max_gpus).
    type: float
  replicas:
    description:
      - How many replicas of the model to serve, at least 1. More than the GPUs hold is refused, saying how many fit
        and why.
      - Unset means as many as the GPUs hold (on CPUs, one).
      - Mutually exclusive with O(min_replicas) and O(max_replicas).
    type: int
  min_replicas:
    description:
      - Turns on autoscaling by Ray Serve, with O(max_replicas); the fewest replicas kept running, at least 1. The
        plan starts with this many (RV(replicas)). Unset while O(max_replicas) is set means V(1).
    type: int
  max_replicas:
    description:
      - Turns on autoscaling by Ray Serve, with O(min_replicas); the most replicas, at least O(min_replicas). The
        Ray layout (the hosts' GPUs, the KubeRay worker group's C(max_replicas)) is sized for this many, which must
        fit. Unset while O(min_replicas) is set means as many as the GPUs hold.
    type: int
  target_concurrency:
    description:
      - Full-length (O(max_model_len)) sequences each replica must hold in its KV cache at once; it sizes the
        replicas (vLLM's Maximum concurrency of a replica is at least this) and is Ray Serve's
        C(target_ongoing_requests) per replica.
      - V(8) keeps a replica busy with batching while leaving room for more replicas; raise it for fewer, larger
        replicas with more KV cache each, lower it for more, smaller ones.
    type: int
    default: 8
  allow_cross_node_tp:
    description:
      - Allow TP groups that span nodes. TP all-reduces every layer, so over the network it needs a fast fabric
        (InfiniBand or RoCE).
      - With it, an explicit O(tensor_parallel_size) larger than a node is accepted, and the planner considers such
        layouts after every layout with TP inside a node.
    type: bool
    default: false
  cpu_kvcache_space_gib:
    description:
      - For a CPU plan, the KV cache size in GiB per worker (vLLM's C(VLLM_CPU_KVCACHE_SPACE)). When unset,
        O(gpu_memory_utilization) of the smallest node's O(nodes[].memory_mib) (on Kubernetes, of the driver pod's
        O(cpu_pods[].engine_memory_mib) when given) minus weights and overhead, as vLLM does without the variable.
        Ignored by a GPU plan.
    type: int
  runtime_overhead_gib:
    description:
      - Memory per GPU reserved for what vLLM measures at start-up rather than knows in advance, activations of a
        batch, CUDA graphs, NCCL buffers, the CUDA context and the memory the driver keeps back.
      - Defaults to V(3.0) on GPUs, a conservative estimate at vLLM's default batch settings, and V(2.0) on CPUs
        for the Python process and its threads.
    type: float
  option_names:
    description:
      - "How error messages, RV(reasons) and RV(warnings) name each option, as C({option: name}). A playbook passes
        for example C({tensor_parallel_size: vllm_serve_tensor_parallel_size, max_model_len:
        vllm_serve_max_model_len}) so that a refusal reads C(vllm_serve_tensor_parallel_size=2 does not divide
        num_attention_heads=9 ...)."
      - The keys are this module's option names; an unknown key is refused with the list of valid ones. Options
        left out keep their own names, so with no entries every message reads as without this option.
    type: dict
    default: {}
  kuberay_layout:
    description:
      - "With O(platform=kubernetes): the user's KubeRay layout, replacing the plan's RV(ray_layout.kuberay), shaped
        like it: C({head: {num_gpus, node}, worker_group: {replicas, min_replicas, max_replicas, num_of_hosts,
        num_gpus, gpu_product, cpus, memory_mib, pods_per_node}}). Keys left out are filled from the plan's layout,
        except that an overridden C(replicas) also sets C(min_replicas) and C(max_replicas) when they are left out,
        and the plan's C(pods_per_node) is dropped (V({})) when the number of worker pods or their GPUs change."
      - The planner first chooses TP and PP as usual (keeping O(tensor_parallel_size) and O(pipeline_parallel_size)
        when given), then fails, saying what it expected, what it saw and the fix, when a pod asks for more GPUs than
        the largest node has, the pods need more GPUs than the nodes have, the layout's GPUs
        (C(head.num_gpus + replicas x num_of_hosts x num_gpus)) are fewer than TP x PP, a pod's GPUs are not a
        multiple of TP while TP fits in a node (a TP group would be split across pods; allowed with
        O(allow_cross_node_tp=true)), a count is not a whole number at or above its minimum (C(num_of_hosts) 1, the
        others 0), or C(min_replicas <= replicas <= max_replicas) does not hold. More GPUs than TP x PP are accepted
        with a warning that the extra GPUs stay idle.
      - Refused with O(platform=hosts). An empty dict is the same as none.
    type: dict
  cpu_pods:
    description:
      - "With O(platform=kubernetes), the pods without GPUs that must fit beside KubeRay's worker pods: the Ray head
        (unless it carries GPUs) and the vLLM driver. The planner places them, largest first, in what the worker pods
        leave on the nodes (each node's allocatable O(nodes[].cpus) and O(nodes[].memory_mib) minus its worker pods'
        requests, O(worker_request_ratio) of their share), says in RV(reasons) where each goes, and fails naming the
        pods and what each node keeps when one does not fit (it would stay Pending)."
      - A pod with a O(cpu_pods[].node_selector) goes to a node pool the plan does not see; it is only named.
    type: list
    elements: dict
    suboptions:
      name:
        description: What the pod is, for the messages (C(the Ray head pod)).
        type: str
        required: true
      cpus:
        description: Its CPU request, in cores.
        type: float
        required: true
      memory_mib:
        description: Its memory request, in MiB.
        type: int
        required: true
      node_selector:
        description: The node selector that sends it to other nodes (a CPU node pool); empty, beside the workers.
        type: dict
        default: {}
      ray_head:
        description: Whether this is the Ray head pod, which goes to the layout's C(head.node) when it carries GPUs.
        type: bool
        default: false
      engine_memory_mib:
        description:
          - The vLLM driver pod's memory limit in MiB. A CPU plan on Kubernetes runs vLLM's engine inside that pod
            (the C(mp) executor), so weights, the KV cache and O(runtime_overhead_gib) are sized to it instead of a
            node's memory, and an unset O(cpu_kvcache_space_gib) is taken from it.
        type: int
  worker_request_ratio:
    description:
      - With O(platform=kubernetes), the share of its node's allocatable (divided by the worker pods on the node) a
        worker pod requests, as the ray_cluster role renders it; the rest is left for O(cpu_pods) and the node's
        DaemonSets.
    type: float
    default: 0.8
  device:
    description:
      - What vLLM serves on. V(auto) plans on GPUs when any node has one, else on the nodes' CPUs.
      - V(cpu) plans on the CPUs even where the nodes have GPUs, which then stay unused (RV(reasons) says how many);
        Ray registers none of them (RV(ray_layout.hosts) starts every node with no GPU, RV(ray_layout.kuberay) has
        worker pods without a GPU request) and RV(device) is V(CPU), so vLLM runs its CPU form.
      - V(gpu) insists on GPUs and fails, naming the option and the fix, when no node has one.
    type: str
    choices: [auto, gpu, cpu]
    default: auto
notes:
  - KV bytes per token and layer are 2 x KV heads x head_dim x dtype bytes per GPU, with KV heads divided by TP
    (replicated when TP exceeds them); multi-head latent attention (DeepSeek-V2/V3/R1) caches
    C(kv_lora_rank + qk_rope_head_dim) values per token and layer, whole on every TP rank.
  - Layers are split over PP stages as vLLM does; the stage with the least room decides.
  - KV blocks are 16 tokens on GPUs and 128 on CPUs (vLLM 0.32 defaults).
  - A replica's KV capacity is that of its tightest GPU, since TP splits the KV heads (or MLA's latent is whole on
    every rank) and PP splits the layers, so every GPU of a replica holds the same tokens. A replica holds
    O(target_concurrency) sequences when vLLM's Maximum concurrency for it (KV blocks over the blocks of one
    O(max_model_len) sequence) is at least that. Replicas are sized on the smallest GPU among the nodes.
  - RV(serve.max_ongoing_requests) is the full sequences a replica's KV cache holds, at least O(target_concurrency)
    and at most vLLM's default C(max_num_seqs) (1024 on H100/H200-class GPUs, 256 on others, 128 per CPU worker),
    so Ray Serve sends a replica no more than it can run at once, and sends the rest to other replicas.
seealso:
  - name: vLLM parallelism and scaling
    description: How vLLM combines tensor and pipeline parallelism across nodes.
    link: https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html
"""

EXAMPLES = r"""
- name: Plan a 70B model on the seed's two A100-80GB nodes
  llmops.ray_vllm.deployment_plan:
    platform: kubernetes
    nodes:
      - {name: gpu-node-0, gpus: 1, gpu_memory_mib: 81920, gpu_product: NVIDIA A100-SXM4-80GB}
      - {name: gpu-node-1, gpus: 1, gpu_memory_mib: 81920, gpu_product: NVIDIA A100-SXM4-80GB}
    model_path: /models/DeepSeek-R1-Distill-Llama-70B
    max_model_len: 8096
  register: plan

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ plan.table_lines }}"

- name: Plan with a user's KubeRay layout, naming the playbook's variables in messages
  llmops.ray_vllm.deployment_plan:
    platform: kubernetes
    nodes: "{{ cuda_check_facts.nodes }}"
    model_path: /models/DeepSeek-R1-Distill-Llama-70B
    max_model_len: "{{ vllm_serve_max_model_len }}"
    kuberay_layout: "{{ ray_cluster_kuberay_layout }}"
    option_names:
      max_model_len: vllm_serve_max_model_len
      kuberay_layout: ray_cluster_kuberay_layout
  register: plan

- name: Autoscale replicas of 70B on two 8 x H100 nodes between 2 and 4, each holding 16 sequences of 8096 tokens
  llmops.ray_vllm.deployment_plan:
    platform: kubernetes
    nodes: "{{ cuda_check_facts.nodes }}"
    model_path: /models/DeepSeek-R1-Distill-Llama-70B
    max_model_len: 8096
    target_concurrency: 16
    min_replicas: 2
    max_replicas: 4
  register: plan

- name: Plan the demo model on the CPUs of GPU nodes, leaving their GPUs unused
  llmops.ray_vllm.deployment_plan:
    platform: kubernetes
    device: cpu
    nodes: "{{ cuda_check_facts.nodes }}"
    model_path: /models/SmolLM2-135M-Instruct
    max_model_len: 2048
    cpu_kvcache_space_gib: 1
    option_names: {device: ray_vllm_device}

- name: Plan the CPU demo with a 1 GiB KV cache
  llmops.ray_vllm.deployment_plan:
    platform: hosts
    nodes:
      - {name: localhost, gpus: 0, memory_mib: 24000}
    model_path: /tmp/llmops-ray-vllm-models/smollm2-135m-instruct-float32
    dtype: float32
    max_model_len: 2048
    cpu_kvcache_space_gib: 1
"""

RETURN = r"""
tensor_parallel_size:
  description: TP size of each replica (vLLM C(--tensor-parallel-size)).
  returned: success
  type: int
  sample: 8
pipeline_parallel_size:
  description: PP size of each replica (vLLM C(--pipeline-parallel-size)).
  returned: success
  type: int
  sample: 2
world_size:
  description: TP x PP, the number of GPUs (or CPU workers) one replica's vLLM uses.
  returned: success
  type: int
  sample: 16
gpus_total:
  description: GPUs the nodes have (also on a CPU plan, which uses none of them).
  returned: success
  type: int
  sample: 16
gpus_used:
  description: GPUs the plan uses, all replicas together (with autoscaling, for RV(autoscaling.max_replicas)).
  returned: success
  type: int
  sample: 16
gpus_idle:
  description:
    - Usable GPUs the plan leaves unused (a cap, fewer replicas asked for, or too few left for another replica; a
      warning says which). GPUs a head keeps back (O(head_gpus)) are not usable and not counted.
  returned: success
  type: int
  sample: 0
nodes_total:
  description: Nodes given.
  returned: success
  type: int
  sample: 2
nodes_used:
  description: Nodes whose GPUs (or CPUs) the plan uses, all replicas together.
  returned: success
  type: int
  sample: 2
replicas:
  description: Replicas of the model the plan starts; with autoscaling, RV(autoscaling.min_replicas).
  returned: success
  type: int
  sample: 1
autoscaling:
  description: Ray Serve's autoscaling of the replicas, or null for a fixed number (no O(min_replicas)/O(max_replicas)).
  returned: success
  type: dict
  sample: {min_replicas: 2, max_replicas: 4, target_ongoing_requests: 8, max_ongoing_requests: 58}
  contains:
    min_replicas:
      description: Fewest replicas kept running.
      type: int
    max_replicas:
      description: Most replicas; the Ray layout holds this many.
      type: int
    target_ongoing_requests:
      description: Ongoing requests per replica Ray Serve aims at, O(target_concurrency).
      type: int
    max_ongoing_requests:
      description: The same as RV(serve.max_ongoing_requests).
      type: int
replica:
  description: One replica of the model.
  returned: success
  type: dict
  sample: {tensor_parallel_size: 8, pipeline_parallel_size: 2, gpus: 16, nodes: 2, kv_cache_tokens: 2512288,
           max_concurrency: 15.33}
  contains:
    tensor_parallel_size:
      description: Its TP size, the same as RV(tensor_parallel_size).
      type: int
    pipeline_parallel_size:
      description: Its PP size, the same as RV(pipeline_parallel_size).
      type: int
    gpus:
      description: Its GPUs, TP x PP (0 on CPU).
      type: int
    nodes:
      description: Nodes one replica spans.
      type: int
    kv_cache_tokens:
      description: Tokens its KV cache holds, the same as RV(memory.kv_cache_tokens).
      type: int
    max_concurrency:
      description: Full O(max_model_len) sequences it holds at once (vLLM's Maximum concurrency).
      type: float
serve:
  description: How the replicas are served.
  returned: success
  type: dict
  sample: {engine: vllm, max_ongoing_requests: 15, target_ongoing_requests: 8}
  contains:
    engine:
      description: V(vllm) (vLLM's own server) for one replica without autoscaling and without O(replicas), else
        V(serve_llm) (Ray Serve LLM routing requests to the replicas). A set O(replicas), even V(1), asks for Serve,
        so that a later count is applied in place.
      type: str
    max_ongoing_requests:
      description: Requests Ray Serve sends one replica at once; see the notes for how it is derived.
      type: int
    target_ongoing_requests:
      description: Ongoing requests per replica autoscaling aims at, O(target_concurrency).
      type: int
placement_group:
  description: The Ray placement group each replica reserves.
  returned: success
  type: dict
  sample: {bundles: [{GPU: 1, CPU: 1}, {GPU: 1, CPU: 1}], strategy: PACK}
  contains:
    bundles:
      description: "One C({GPU: 1, CPU: 1}) bundle per GPU of a replica; on CPU one C({CPU: 1}) per worker."
      type: list
      elements: dict
    strategy:
      description: V(STRICT_PACK) when a replica sits in one node, V(PACK) when it spans nodes (RV(reasons) says
        why).
      type: str
kv_capacity:
  description: The KV cache of all replicas together (with autoscaling, of RV(autoscaling.max_replicas)).
  returned: success
  type: dict
  sample: {tokens: 2512288, sequences: 15}
  contains:
    tokens:
      description: Tokens.
      type: int
    sequences:
      description: Whole O(max_model_len) sequences held at once, the expected concurrency at full length.
      type: int
cross_node_tensor_parallel:
  description: Whether a TP group spans nodes.
  returned: success
  type: bool
  sample: false
max_model_len:
  description: Tokens per sequence the plan was sized for (vLLM C(--max-model-len)).
  returned: success
  type: int
  sample: 8096
platform:
  description: The O(platform) planned for.
  returned: success
  type: str
  sample: kubernetes
device:
  description: V(GPU), or V(CPU) when no node has a GPU or O(device=cpu).
  returned: success
  type: str
  sample: GPU
dtype:
  description: Data type vLLM serves with (its C(--dtype)).
  returned: success
  type: str
  sample: bfloat16
kv_cache_dtype:
  description: Data type of the KV cache.
  returned: success
  type: str
  sample: bfloat16
gpu_memory_utilization:
  description: Fraction of each GPU's memory the plan lets vLLM use.
  returned: success
  type: float
  sample: 0.9
model:
  description: What the planner read about the model.
  returned: success
  type: dict
  contains:
    name:
      description: Model name.
      type: str
      sample: DeepSeek-R1-Distill-Llama-70B
    model_type:
      description: The config's C(model_type).
      type: str
      sample: llama
    num_hidden_layers:
      description: Layers.
      type: int
      sample: 80
    num_attention_heads:
      description: Attention heads.
      type: int
      sample: 64
    num_key_value_heads:
      description: KV heads.
      type: int
      sample: 8
    head_dim:
      description: Head dimension (C(head_dim), else C(hidden_size / num_attention_heads)).
      type: int
      sample: 128
    attention:
      description: V(MHA), V(GQA), V(MQA) or V(MLA).
      type: str
      sample: GQA
    max_position_embeddings:
      description: The model's longest context.
      type: int
      sample: 131072
    quantization:
      description: C(quant_method) of a pre-quantized checkpoint, else null.
      type: str
      sample: fp8
    weights_gib:
      description: Weights in device memory, all GPUs together, in GiB.
      type: float
      sample: 131.42
    weights_source:
      description: Where the weight size comes from.
      type: str
      sample: exact, metadata.total_size of model.safetensors.index.json (0 of 17 shards on disk)
memory:
  description: Memory of one GPU (or CPU worker) of the tightest pipeline stage of one replica.
  returned: success
  type: dict
  contains:
    device:
      description: V(GPU) or V(CPU).
      type: str
      sample: GPU
    gpu_memory_gib:
      description: Memory of one GPU (null on CPU).
      type: float
      sample: 80.0
    usable_gib:
      description: O(gpu_memory_utilization) of it (null on CPU).
      type: float
      sample: 72.0
    weights_gib:
      description: Weights on one GPU.
      type: float
      sample: 65.71
    runtime_overhead_gib:
      description: The O(runtime_overhead_gib) reserve.
      type: float
      sample: 3.0
    kv_cache_gib:
      description: KV cache on one GPU (on CPU, C(VLLM_CPU_KVCACHE_SPACE)).
      type: float
      sample: 3.29
    kv_cache_bytes_per_token:
      description: KV bytes one token takes on one GPU.
      type: int
      sample: 163840
    kv_cache_tokens:
      description: Tokens the KV cache holds (what vLLM logs as KV cache size).
      type: int
      sample: 21568
    kv_cache_blocks:
      description: KV blocks per GPU.
      type: int
      sample: 1348
    block_size:
      description: Tokens per KV block.
      type: int
      sample: 16
    max_model_len:
      description: Tokens per sequence.
      type: int
      sample: 8096
    min_kv_cache_gib:
      description: KV cache one O(max_model_len) sequence needs.
      type: float
      sample: 1.236
    margin_gib:
      description: KV cache beyond one full sequence; negative when it misses.
      type: float
      sample: 2.05
    max_concurrent_sequences:
      description: Whole sequences of O(max_model_len) tokens the KV cache holds at once.
      type: int
      sample: 2
    max_concurrency:
      description: The same as a fraction, as vLLM logs it (Maximum concurrency).
      type: float
      sample: 2.66
    stage_layers:
      description: Layers per pipeline stage.
      type: list
      elements: int
      sample: [40, 40]
    fits:
      description: Whether one full sequence fits.
      type: bool
      sample: true
    cpu_kvcache_space_gib:
      description: C(VLLM_CPU_KVCACHE_SPACE) of a CPU plan.
      type: int
      returned: when RV(device=CPU)
      sample: 1
ray_layout:
  description: How Ray is laid out.
  returned: success
  type: dict
  contains:
    kuberay:
      description:
        - The RayCluster's head and its one worker group, holding the GPUs of every replica; with
          O(kuberay_layout), that layout merged over the plan's, once checked.
      returned: when O(platform=kubernetes)
      type: dict
      contains:
        head:
          description: C(num_gpus) of the head pod and the C(node) it must run on when it carries GPUs.
          type: dict
          sample: {num_gpus: 0, node: null}
        worker_group:
          description:
            - C(replicas) (worker pods; also C(min_replicas), and C(max_replicas)), C(num_of_hosts) (always 1),
              C(num_gpus) per pod (its C(nvidia.com/gpu) limit), C(gpu_product), C(cpus) and C(memory_mib) (the
              smallest share of a worker node's allocatable per pod), and C(pods_per_node) (worker pods on each
              node).
            - With autoscaling, C(replicas) and C(min_replicas) are the pods of RV(autoscaling.min_replicas) model
              replicas, C(max_replicas) and C(pods_per_node) those of RV(autoscaling.max_replicas); with
              C(max_replicas) above C(min_replicas) KubeRay's autoscaler must be enabled to add pods.
          type: dict
          sample: {replicas: 2, min_replicas: 2, max_replicas: 2, num_of_hosts: 1, num_gpus: 1}
    hosts:
      description: The Ray head and workers on hosts.
      returned: when O(platform=hosts)
      type: dict
      contains:
        head:
          description: C(name) of the head host and the C(num_gpus) it registers (C(ray start --num-gpus)).
          type: dict
          sample: {name: gpu-node-0, num_gpus: 1}
        workers:
          description: C(name) and C(num_gpus) of each worker host the plan uses.
          type: list
          elements: dict
          sample: [{name: gpu-node-1, num_gpus: 1}]
        idle:
          description: Hosts with GPUs the plan leaves unused (on a CPU plan, every host with GPUs).
          type: list
          elements: str
          sample: []
vllm_args:
  description:
    - The vLLM server arguments the plan implies for each replica, the one source of vLLM's parallelism and memory
      arguments; the vllm_serve role builds its command line from it.
  returned: success
  type: dict
  sample: {tensor_parallel_size: 1, pipeline_parallel_size: 2, max_model_len: 8096, gpu_memory_utilization: 0.9,
           dtype: bfloat16, kv_cache_dtype: auto, quantization: null}
  contains:
    tensor_parallel_size:
      description: C(--tensor-parallel-size), the same as RV(tensor_parallel_size).
      type: int
      sample: 1
    pipeline_parallel_size:
      description: C(--pipeline-parallel-size), the same as RV(pipeline_parallel_size).
      type: int
      sample: 2
    max_model_len:
      description: C(--max-model-len), the same as RV(max_model_len).
      type: int
      sample: 8096
    gpu_memory_utilization:
      description: C(--gpu-memory-utilization), the O(gpu_memory_utilization) the plan was sized with.
      type: float
      sample: 0.9
    dtype:
      description: C(--dtype), the serving dtype the plan resolved (never V(auto)).
      type: str
      sample: bfloat16
    kv_cache_dtype:
      description: C(--kv-cache-dtype) as O(kv_cache_dtype) asked for it (V(auto) stays V(auto)).
      type: str
      sample: auto
    quantization:
      description: C(--quantization), V(fp8) when O(dtype=fp8) quantizes an unquantized checkpoint online, else null.
      type: str
      sample: null
env:
  description: Environment variables vLLM needs for the plan (C(VLLM_CPU_KVCACHE_SPACE) on CPU).
  returned: success
  type: dict
  sample: {VLLM_CPU_KVCACHE_SPACE: "1"}
reasons:
  description: One sentence per decision.
  returned: always
  type: list
  elements: str
warnings:
  description:
    - What the operator should know (idle GPUs, TP across nodes, a shortened max_model_len). Ansible also shows each
      as a warning.
  returned: when there is something to warn about
  type: list
  elements: str
table:
  description:
    - A short table of the plan (nodes, GPUs used and idle, replicas x (TP x PP), memory per GPU, KV tokens per
      replica, and the full O(max_model_len) sequences all replicas hold at once).
  returned: success
  type: str
table_lines:
  description: RV(table) as a list of lines, for C(ansible.builtin.debug).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_plan import (
    DEFAULT_ALLOW_CROSS_NODE_TP,
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_KV_CACHE_DTYPE,
    DEFAULT_TARGET_CONCURRENCY,
    DEFAULT_WORKER_REQUEST_RATIO,
    DEVICES,
    DTYPES,
    KV_CACHE_DTYPES,
    PLATFORMS,
    PlanError,
    Planner,
    PlanRequest,
)

NODE_OPTIONS = dict(
    name=dict(type="str", required=True),
    gpus=dict(type="int", default=0),
    gpu_memory_mib=dict(type="int"),
    gpu_product=dict(type="str"),
    cpus=dict(type="float"),
    memory_mib=dict(type="int"),
)

ARGUMENT_SPEC = dict(
    nodes=dict(type="list", elements="dict", required=True, options=NODE_OPTIONS),
    model_path=dict(type="path"),
    model_config=dict(type="dict"),
    model_params_b=dict(type="float"),
    model_name=dict(type="str"),
    dtype=dict(type="str", default=DEFAULT_DTYPE, choices=list(DTYPES)),
    kv_cache_dtype=dict(type="str", default=DEFAULT_KV_CACHE_DTYPE, choices=list(KV_CACHE_DTYPES)),
    max_model_len=dict(type="int"),
    gpu_memory_utilization=dict(type="float", default=DEFAULT_GPU_MEMORY_UTILIZATION),
    tensor_parallel_size=dict(type="int"),
    pipeline_parallel_size=dict(type="int"),
    platform=dict(type="str", required=True, choices=list(PLATFORMS)),
    head_gpus=dict(type="raw"),
    max_gpus=dict(type="int"),
    allow_cross_node_tp=dict(type="bool", default=DEFAULT_ALLOW_CROSS_NODE_TP),
    cpu_kvcache_space_gib=dict(type="int"),
    runtime_overhead_gib=dict(type="float"),
    option_names=dict(type="dict", default={}),
    kuberay_layout=dict(type="dict"),
    cpu_pods=dict(
        type="list",
        elements="dict",
        options=dict(
            name=dict(type="str", required=True),
            cpus=dict(type="float", required=True),
            memory_mib=dict(type="int", required=True),
            node_selector=dict(type="dict", default={}),
            ray_head=dict(type="bool", default=False),
            engine_memory_mib=dict(type="int"),
        ),
    ),
    worker_request_ratio=dict(type="float", default=DEFAULT_WORKER_REQUEST_RATIO),
    device=dict(type="str", default=DEFAULT_DEVICE, choices=list(DEVICES)),
    replicas=dict(type="int"),
    min_replicas=dict(type="int"),
    max_replicas=dict(type="int"),
    gpu_share=dict(type="float"),
    target_concurrency=dict(type="int", default=DEFAULT_TARGET_CONCURRENCY),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        # max_gpus/gpu_share and replicas/min_replicas/max_replicas are exclusive too; the request refuses those by
        # the names option_names gives them.
        mutually_exclusive=[("model_path", "model_config")],
        required_one_of=[("model_path", "model_config")],
        required_by={"model_config": ("model_params_b",)},
        supports_check_mode=True,
    )
    try:
        # Every option is checked while the request is built; the planner then sizes, chooses and assembles.
        plan = Planner(PlanRequest.from_params(module.params)).plan()
    except PlanError as error:
        module.fail_json(msg=error.msg, reasons=[], **error.facts)
    # Ansible shows these as warnings and returns them under the warnings key.
    for warning in plan.pop("warnings"):
        module.warn(warning)
    module.exit_json(**plan)


if __name__ == "__main__":
    main()

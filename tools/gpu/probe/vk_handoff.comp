#version 450
// tools/gpu/probe/vk_handoff_probe.cpp's kernel: one hop of a chain of dependent dispatches.
// Work group g of hop h: data_out[g] = data_in[(g + 1) % nwg] + 1 (it reads another group's
// result of the hop before). mode 0: the host puts a pipeline barrier between hops; mode 1: no
// barrier, invocation 0 waits until every group of hop h − 1 has counted itself in
// counters[h − 1] (device-scope acquire), and each group counts itself in counters[h] after
// its write (release). A wait longer than spin_limit polls sets err[0] and gives up. mode 2:
// one dispatch runs all `hop` hops itself, the same wait and count between them (an in-shader
// grid barrier; needs every work group resident at once).
#pragma use_vulkan_memory_model
#extension GL_KHR_memory_scope_semantics : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) coherent buffer Data { uint data[]; };  // [2][nwg], ping-pong; coherent:
// device-scope visible to the acquire / release above (the Vulkan memory model)
layout(std430, binding = 1) buffer Counters { uint counters[]; };
layout(std430, binding = 2) buffer Err { uint err[]; };
layout(push_constant) uniform Push { uint hop, nwg, mode, spin_limit; } p;
shared uint s_v;
void step(uint h, uint g, uint t) {
  const uint in_base = ((h + 1u) & 1u) * p.nwg, out_base = (h & 1u) * p.nwg;
  if (t == 0u) {
    if (p.mode != 0u && h > 0u) {
      uint n = 0u;
      while (atomicLoad(counters[h - 1u], gl_ScopeDevice, gl_StorageSemanticsBuffer,
                        gl_SemanticsAcquire) < p.nwg) {
        if (++n > p.spin_limit) { atomicOr(err[0], 1u); break; }
      }
    }
    s_v = h == 0u ? 0u : data[in_base + (g + 1u) % p.nwg];
  }
  barrier();
  if (t == 0u) {
    data[out_base + g] = s_v + 1u;
    if (p.mode != 0u)
      atomicAdd(counters[h], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelease);
  }
  barrier();
}
void main() {
  const uint g = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
  if (p.mode == 2u) {
    for (uint h = 0u; h < p.hop; ++h) step(h, g, t);
  } else {
    step(p.hop, g, t);
  }
}

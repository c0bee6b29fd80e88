# Native build, run by `npm ci` (the root package's install script) through node-gyp.
# Outputs land in build/Release/: the addon (conductor_native.node) and the executables
# conductor-runtime (the OCI runtime), conductor-shim (one per container), conductor-probe (tcp/http probes inside a
# container's network namespace) and nsjoin (example).
{
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
    "include_dirs": ["runtime-core/native"],
  },
  "targets": [
    {
      "target_name": "conductor_native",
      "sources": ["<!@(ls -1 runtime-core/native/addon/*.cc runtime-core/native/common/*.cc runtime-core/native/cgroups/*.cc runtime-core/native/image/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["-lz", "-lzstd"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
    },
    {
      "target_name": "conductor-runtime",
      "type": "executable",
      "sources": ["<!@(ls -1 runtime-core/native/runtime/*.cc runtime-core/native/common/*.cc runtime-core/native/cgroups/*.cc)"],
      # Static: no dynamic loader at start-up (the runtime re-executes itself from a sealed memfd,
      # see cloned_binary.cc) and nothing from the host's library path inside a container.
      # Stripped: the whole binary is copied into a memfd on every create/run/exec.
      "ldflags": ["-static", "-Wl,--gc-sections", "-s"],
      "cflags_cc": ["-ffunction-sections", "-fdata-sections"],
      "libraries": ["-lseccomp"],
    },
    {
      "target_name": "conductor-shim",
      "type": "executable",
      # Of common/ only the error model (error.cc): fs.cc and the rest allocate freely.
      "sources": ["<!@(ls -1 runtime-core/native/shim/*.cc)", "runtime-core/native/common/error.cc"],
      # The shim lives as long as its container: keep it small (no libstdc++ at run time).
      "ldflags": ["-static", "-Wl,--gc-sections"],
      "cflags_cc": ["-ffunction-sections", "-fdata-sections", "-Os"],
    },
    {
      "target_name": "conductor-probe",
      "type": "executable",
      "sources": ["runtime-core/native/probe/probe.cc", "runtime-core/native/common/error.cc"],
      "ldflags": ["-static", "-Wl,--gc-sections", "-s"],
      "cflags_cc": ["-Os"],
    },
    {
      "target_name": "nsjoin",
      "type": "executable",
      "sources": ["runtime-core/native/examples/nsjoin.cc"],
    },
  ],
}

# node-gyp's build of the addon for `npm install` of the packed package:
# against the librhizos that pkg-config names (an installed one; set
# PKG_CONFIG_PATH for another prefix), with a run path to its libdir so the
# addon loads the same library it was built against. The checkout builds
# the addon with meson instead (meson.build).
{
  "targets": [{
    "target_name": "rhizos",
    "sources": ["src/addon.c", "src/client.c"],
    "defines": ["NAPI_VERSION=8"],
    "cflags": ["-std=gnu11", "-fvisibility=hidden", "<!@(pkg-config --cflags rhizos)"],
    "ldflags": ["<!@(pkg-config --libs-only-L rhizos | sed 's/-L/-Wl,-rpath,/g')"],
    "libraries": ["<!@(pkg-config --libs rhizos)", "-lpthread"]
  }]
}

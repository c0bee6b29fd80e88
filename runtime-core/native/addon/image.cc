// unpackLayer(opts), packLayer(opts) and resolveInRoot(root, path): the image layer store's
// native half (see image/unpack.h and image/pack.h for the security contracts). Unpacking and
// packing run on the libuv pool.
#include "addon/addon.h"
#include "image/pack.h"
#include "image/unpack.h"

namespace conductor::addon {

namespace {

image::Compression compression_arg(Napi::Value v) {
  if (v.IsUndefined()) return image::Compression::Auto;
  std::string s = string_arg(v, "unpackLayer: compression");
  if (s == "auto") return image::Compression::Auto;
  if (s == "gzip") return image::Compression::Gzip;
  if (s == "zstd") return image::Compression::Zstd;
  if (s == "none") return image::Compression::None;
  throw Napi::TypeError::New(v.Env(), "unpackLayer: compression must be auto, gzip, zstd or none");
}

std::string absolute_arg(Napi::Value v, const std::string& what) {
  std::string s = string_arg(v, what);
  if (s.empty() || s[0] != '/')
    throw Napi::TypeError::New(v.Env(), what + " `" + s + "` is not an absolute path");
  return s;
}

}  // namespace

void register_image(Napi::Env env, Napi::Object exports) {
  exports.Set("unpackLayer", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                if (!info[0].IsObject())
                  throw Napi::TypeError::New(info.Env(), "unpackLayer: options must be an object");
                Napi::Object o = info[0].As<Napi::Object>();
                std::string archive = absolute_arg(o.Get("archive"), "unpackLayer: archive");
                std::string target = absolute_arg(o.Get("target"), "unpackLayer: target");
                image::Compression c = compression_arg(o.Get("compression"));
                return PromiseWorker<image::UnpackResult>::start(
                    info.Env(), "conductor.unpackLayer",
                    [archive, target, c]() { return image::unpack_layer(archive, target, c); },
                    [](Napi::Env env, const image::UnpackResult& r) {
                      Napi::Object out = Napi::Object::New(env);
                      out.Set("entries", Napi::Number::New(env, static_cast<double>(r.entries)));
                      out.Set("bytes", Napi::Number::New(env, static_cast<double>(r.bytes)));
                      out.Set("diffId", Napi::String::New(env, r.diff_id));
                      return out;
                    });
              }));

  exports.Set(
      "packLayer", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
        if (!info[0].IsObject())
          throw Napi::TypeError::New(info.Env(), "packLayer: options must be an object");
        Napi::Object o = info[0].As<Napi::Object>();
        std::string source = absolute_arg(o.Get("source"), "packLayer: source");
        std::string target = absolute_arg(o.Get("target"), "packLayer: target");
        image::Compression c = image::Compression::Gzip;
        if (!o.Get("compression").IsUndefined()) {
          std::string s = string_arg(o.Get("compression"), "packLayer: compression");
          if (s == "none")
            c = image::Compression::None;
          else if (s != "gzip")
            throw Napi::TypeError::New(info.Env(), "packLayer: compression must be gzip or none");
        }
        int level = 6;
        if (!o.Get("level").IsUndefined()) {
          if (!o.Get("level").IsNumber())
            throw Napi::TypeError::New(info.Env(), "packLayer: level must be 1..9");
          level = o.Get("level").As<Napi::Number>().Int32Value();
          if (level < 1 || level > 9)
            throw Napi::TypeError::New(info.Env(), "packLayer: level must be 1..9");
        }
        return PromiseWorker<image::PackResult>::start(
            info.Env(), "conductor.packLayer",
            [source, target, c, level]() { return image::pack_layer(source, target, c, level); },
            [](Napi::Env env, const image::PackResult& r) {
              Napi::Object out = Napi::Object::New(env);
              out.Set("entries", Napi::Number::New(env, static_cast<double>(r.entries)));
              out.Set("bytes", Napi::Number::New(env, static_cast<double>(r.bytes)));
              out.Set("diffId", Napi::String::New(env, r.diff_id));
              out.Set("digest", Napi::String::New(env, r.digest));
              out.Set("size", Napi::Number::New(env, static_cast<double>(r.size)));
              return out;
            });
      }));

  exports.Set("resolveInRoot", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                std::string root = absolute_arg(info[0], "resolveInRoot: root");
                std::string path = string_arg(info[1], "resolveInRoot: path");
                return guarded(info.Env(), [&]() -> Napi::Value {
                  return Napi::String::New(info.Env(), image::resolve_in_root(root, path));
                });
              }));
}

}  // namespace conductor::addon

// The web app's modules import the contract as the broker serves it, beside them
// (`./contract/…`); in this tree it is a folder up. Registered with `node --import`, so
// that unit tests can load the app's modules as the browser does.
import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
export async function resolve(spec, ctx, next) {
  if (ctx.parentURL?.includes("/web/app/") && spec.startsWith("./contract/")) spec = "../" + spec.slice(2);
  return next(spec, ctx);
}`),
);

// Module resolution hook (see register.js): `wasmsock:plugin/host@…` is the test host.
const FAKE = new URL('./fake-host.js', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasmsock:plugin/host@')) {
    return { url: FAKE, shortCircuit: true };
  }
  return next(specifier, context);
}

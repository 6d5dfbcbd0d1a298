// `node --import wasmsock-sdk/register`: plugin code runs in Node, with the contract's host
// interface answered by the in-memory TestHost (see testing.js) instead of the server.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);

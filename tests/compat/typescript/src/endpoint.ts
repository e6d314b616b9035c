/**
 * Serves the test services and the seed examples on one port, over HTTP/2 (bidirectional streaming) or HTTP/1.1 (request/response).
 *
 * Usage: node dist/endpoint.js [--port N] [--transport h2|http1.1]; the port defaults to env PORT, then 9080.
 * HTTP/2 uses the seed's own serving call, `restate.serve({services, port})`; HTTP/1.1 puts the SDK's
 * `createEndpointHandler` into Node's `http.createServer`.
 */

import "./polyfill.js";

import * as http from "node:http";
import { parseArgs } from "node:util";

import * as restate from "@restatedev/restate-sdk";

import { SEED_SERVICES } from "./seeds.js";
import { TEST_SERVICES } from "./services.js";

const DEFAULT_PORT = 9080;
const TRANSPORTS = ["h2", "http1.1"] as const;
type Transport = (typeof TRANSPORTS)[number];

type Options = { port: number; transport: Transport };

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({ args: argv, options: { port: { type: "string" }, transport: { type: "string", default: "h2" } } });
  const port = Number(values.port ?? process.env.PORT ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`--port must be an integer in 1..65535, got ${values.port ?? process.env.PORT}`);
  }
  const transport = values.transport as Transport;
  if (!TRANSPORTS.includes(transport)) {
    throw new Error(`--transport must be one of ${TRANSPORTS.join(", ")}, got ${values.transport}`);
  }
  return { port, transport };
}

async function serveHttp11(services: restate.ServiceDefinition<string, unknown>[], port: number): Promise<void> {
  const server = http.createServer(restate.createEndpointHandler({ services }));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const services = [...TEST_SERVICES, ...SEED_SERVICES] as restate.ServiceDefinition<string, unknown>[];
  if (options.transport === "h2") {
    await restate.serve({ services, port: options.port });
  } else {
    await serveHttp11(services, options.port);
  }
  console.log(`duro compat endpoint: listening on ${options.port} (${options.transport})`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

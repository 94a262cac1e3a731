// What examples/editor/editor.js needs from npm, as one browser module (build.sh bundles it).
export * as Y from "yjs";
export { default as YPartyKitProvider } from "y-partykit/provider";

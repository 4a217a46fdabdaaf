// The bundler (esbuild) turns an imported stylesheet into the page's CSS asset.
declare module "*.css";

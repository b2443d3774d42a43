import { createRoot } from "react-dom/client";
import "@xyflow/react/dist/style.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { App } from "./app";

createRoot(document.getElementById("root")!).render(<App />);
